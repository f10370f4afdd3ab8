; sieve: sieve of Eratosthenes over 2..1000000, repeated 30 times with a fresh array, as ../shared/bench-peers/sieve
; expect: sieve(1000000) x 30 = 2354940
; expect-status: 0
        .text
main:   li      r10, 1000000        ; m
        li      r11, 30             ; reps
        li      r12, 0              ; total
        li      r13, 0              ; rep counter
        li      r9, 0               ; zero
        li      r7, 1               ; one
rep:    li      r1, 1               ; for i = 1..=m: flags[i] = 1
init:   st8     r7, [r1+flags]
        addi    r1, r1, 1
        bge     r10, r1, init
        li      r1, 2               ; for i = 2; i*i <= m; i++
outer:  mul     r2, r1, r1
        blt     r10, r2, count
        ld8u    r3, [r1+flags]
        beq     r3, r9, next
        mov     r4, r2              ; for j = i*i; j <= m; j += i: flags[j] = 0
inner:  st8     r9, [r4+flags]
        add     r4, r4, r1
        bge     r10, r4, inner
next:   addi    r1, r1, 1
        jmp     outer
count:  li      r1, 2               ; count the flags still set in 2..=m
        li      r5, 0
cnt:    ld8u    r3, [r1+flags]
        beq     r3, r9, skip
        addi    r5, r5, 1
skip:   addi    r1, r1, 1
        bge     r10, r1, cnt
        add     r12, r12, r5
        addi    r13, r13, 1
        blt     r13, r11, rep
        li      r1, s1
        li      r2, s1_end-s1
        sys     1
        mov     r1, r10
        sys     3
        li      r1, s2
        li      r2, s2_end-s2
        sys     1
        mov     r1, r11
        sys     3
        li      r1, s3
        li      r2, s3_end-s3
        sys     1
        mov     r1, r12
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0
        .data
s1:     .ascii  "sieve("
s1_end:
s2:     .ascii  ") x "
s2_end:
s3:     .ascii  " = "
s3_end:
        .align  8
flags:  .zero   1000008
