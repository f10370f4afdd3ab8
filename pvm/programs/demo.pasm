; demo: a short tour of the VM: integer loops, a call, floats, memory, syscalls
; expect: pvm demo
; expect: squares: 1 4 9 16 25 36 49 64 81 100
; expect: primes below 50: 2 3 5 7 11 13 17 19 23 29 31 37 41 43 47
; expect: sqrt(2) = 1.4142135623730951
; expect: fib(30) = 832040
; expect-status: 0
        .text
main:   li      r1, title
        li      r2, title_end-title
        sys     1
        li      r1, sq
        li      r2, sq_end-sq
        sys     1
        li      r4, 1               ; squares of 1..10
        li      r5, 11
sqloop: mul     r1, r4, r4
        sys     3
        addi    r4, r4, 1
        beq     r4, r5, sqdone
        li      r1, ' '
        sys     5
        jmp     sqloop
sqdone: li      r1, 10
        sys     5
        li      r1, pr
        li      r2, pr_end-pr
        sys     1
        li      r4, 2               ; trial division: is r4 prime?
        li      r9, 0
        li      r10, 50
ploop:  li      r6, 2
try:    mul     r7, r6, r6
        blt     r4, r7, prime
        rems    r8, r4, r6
        beq     r8, r9, notp
        addi    r6, r6, 1
        jmp     try
prime:  beq     r12, r9, first      ; r12 = 0 until the first prime is printed
        li      r1, ' '
        sys     5
first:  li      r12, 1
        mov     r1, r4
        sys     3
notp:   addi    r4, r4, 1
        blt     r4, r10, ploop
        li      r1, 10
        sys     5
        li      r1, s2
        li      r2, s2_end-s2
        sys     1
        lif     r1, 2.0
        fsqrt   r1, r1
        sys     4                   ; print_float
        li      r1, 10
        sys     5
        li      r1, f30
        li      r2, f30_end-f30
        sys     1
        li      r1, 30
        call    fib
        mov     r1, r0
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0

; fib(r1) -> r0, iteratively, with its state in memory
fib:    li      r2, state
        li      r3, 0
        st64    r3, [r2]
        li      r3, 1
        st64    r3, [r2+8]
        li      r9, 0
fibl:   beq     r1, r9, fibd
        ld64    r3, [r2]
        ld64    r4, [r2+8]
        add     r5, r3, r4
        st64    r4, [r2]
        st64    r5, [r2+8]
        subi    r1, r1, 1
        jmp     fibl
fibd:   ld64    r0, [r2]
        ret

        .data
title:  .ascii  "pvm demo\n"
title_end:
sq:     .ascii  "squares: "
sq_end:
pr:     .ascii  "primes below 50: "
pr_end:
s2:     .ascii  "sqrt(2) = "
s2_end:
f30:    .ascii  "fib(30) = "
f30_end:
        .align  8
state:  .zero   16
