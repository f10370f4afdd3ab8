; loop: 90000000 iterations of r = (i*i) % 7; if r < 4 then s += r else s -= 1, as ../shared/bench-peers/loop
; expect: loop(90000000) = 51428571
; expect-status: 0
        .text
main:   li      r1, 90000000        ; n
        li      r2, 0               ; i
        li      r3, 0               ; s
        li      r5, 4
        bge     r2, r1, done
top:    mul     r4, r2, r2
        remsi   r4, r4, 7
        addi    r2, r2, 1
        blt     r4, r5, less
        subi    r3, r3, 1
        blt     r2, r1, top
        jmp     done
less:   add     r3, r3, r4
        blt     r2, r1, top
done:   mov     r10, r3
        li      r1, s1
        li      r2, s1_end-s1
        sys     1
        li      r1, 90000000
        sys     3
        li      r1, s2
        li      r2, s2_end-s2
        sys     1
        mov     r1, r10
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0
        .data
s1:     .ascii  "loop("
s1_end:
s2:     .ascii  ") = "
s2_end:
