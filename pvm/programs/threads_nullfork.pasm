; threads_nullfork: creates, runs and joins an empty thread 1000 times (the null-fork cost: pvm run --stats)
; expect: 1000
; expect-status: 0
        .text
main:   li      r6, 1000            ; forks to make
        li      r7, 0               ; forks made
        li      r2, empty
        li      r3, 0x800000        ; its stack (it uses none)
loop:   spawn   r4, r2, r3
        join    r5, r4
        addi    r7, r7, 1
        blt     r7, r6, loop
        mov     r1, r7
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0
empty:  texit   r1                  ; r1 = the argument, 0x800000: the exit value is not read
