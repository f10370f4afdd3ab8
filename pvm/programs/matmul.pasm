; matmul: c = a * b for 400x400 integer matrices, i-j-k loops with the row hoisted, as ../shared/bench-peers/matmul
; expect: matmul(400) = 655226897200
; expect-status: 0
        .text
main:   li      r10, 400            ; n
        muli    r11, r10, 8         ; bytes per row
        li      r1, mat_a
        li      r2, 3
        call    make
        li      r1, mat_b
        li      r2, 7
        call    make
        li      r3, 0               ; i
        li      r12, mat_a          ; &a[i][0]
        li      r13, mat_c          ; &c[i][j]
mi:     li      r4, 0               ; j
        li      r14, mat_b          ; &b[0][j]
mj:     li      r0, 0               ; s
        mov     r5, r12             ; &a[i][k]
        mov     r6, r14             ; &b[k][j]
        add     r7, r12, r11        ; end of row a[i]
mk:     ld64    r8, [r5]
        ld64    r9, [r6]
        mul     r8, r8, r9
        add     r0, r0, r8
        addi    r5, r5, 8
        add     r6, r6, r11
        blt     r5, r7, mk
        st64    r0, [r13]
        addi    r13, r13, 8
        addi    r14, r14, 8
        addi    r4, r4, 1
        blt     r4, r10, mj
        add     r12, r12, r11
        addi    r3, r3, 1
        blt     r3, r10, mi
        li      r1, 0               ; sum of c[i][j] * ((i + j) % 7 + 1)
        li      r3, 0
        li      r13, mat_c
si:     li      r4, 0
sj:     ld64    r5, [r13]
        add     r6, r3, r4
        remsi   r6, r6, 7
        addi    r6, r6, 1
        mul     r5, r5, r6
        add     r1, r1, r5
        addi    r13, r13, 8
        addi    r4, r4, 1
        blt     r4, r10, sj
        addi    r3, r3, 1
        blt     r3, r10, si
        mov     r9, r1
        li      r1, s1
        li      r2, s1_end-s1
        sys     1
        mov     r1, r10
        sys     3
        li      r1, s2
        li      r2, s2_end-s2
        sys     1
        mov     r1, r9
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0

; make(r1 = matrix, r2 = seed): m[i][j] = (i*j + seed*i + j) % 100
make:   li      r3, 0
        mov     r6, r1
mki:    li      r4, 0
mkj:    mul     r5, r3, r4
        mul     r7, r2, r3
        add     r5, r5, r7
        add     r5, r5, r4
        remsi   r5, r5, 100
        st64    r5, [r6]
        addi    r6, r6, 8
        addi    r4, r4, 1
        blt     r4, r10, mkj
        addi    r3, r3, 1
        blt     r3, r10, mki
        ret

        .data
s1:     .ascii  "matmul("
s1_end:
s2:     .ascii  ") = "
s2_end:
        .align  8
mat_a:  .zero   1280000
mat_b:  .zero   1280000
mat_c:  .zero   1280000
