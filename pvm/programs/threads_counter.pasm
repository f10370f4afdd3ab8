; threads_counter: four threads add 1 to a shared counter 10000 times each with xadd: no update is lost
; expect: 40000
; expect-status: 0
        .text
main:   li      r8, 0
        li      r2, worker
        li      r3, 0x800000
spawns: spawn   r4, r2, r3
        addi    r3, r3, -0x10000
        addi    r8, r8, 1
        li      r9, 4
        blt     r8, r9, spawns
        li      r4, 1
joins:  join    r5, r4
        addi    r4, r4, 1
        li      r9, 5
        blt     r4, r9, joins
        li      r10, counter
        ld64    r1, [r10]
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0
worker: li      r6, 10000
        li      r10, counter
        li      r11, 1
again:  xadd    r12, [r10], r11
        addi    r6, r6, -1
        bnez    r6, again
        texit   r6
        .data
counter: .quad  0
