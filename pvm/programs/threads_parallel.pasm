; threads_parallel: two threads each run a CPU-bound loop of 5 million rounds (compare --threads user and kernel)
; expect: 10000000
; expect-status: 0
        .text
main:   li      r2, worker
        li      r3, 0x800000
        spawn   r4, r2, r3
        li      r3, 0x7f0000
        spawn   r5, r2, r3
        join    r6, r4
        join    r7, r5
        add     r1, r6, r7
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0
worker: li      r6, 5000000
        li      r7, 0               ; rounds done
        li      r8, 12345           ; a little arithmetic each round
again:  muli    r8, r8, 1103515245
        addi    r8, r8, 12345
        xor     r9, r8, r7
        addi    r7, r7, 1
        bne     r7, r6, again
        texit   r7
