; threads_mutex: four threads increment a plain counter 2000 times each inside a mutex made of cas and wait/wake
; expect: 8000
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
worker: li      r6, 2000
        li      r10, counter
        li      r11, lock
        li      r13, 1
        li      r14, 0
again:  li      r12, 0              ; lock: cas 0 -> 1, else sleep while it is 1
        cas     r12, [r11], r13
        beqz    r12, locked
        wait    r12, [r11], r13
        jmp     again
locked: ld64    r12, [r10]          ; the critical section: a plain increment
        addi    r12, r12, 1
        st64    r12, [r10]
        xchg    r12, [r11], r14     ; unlock, and wake one waiter
        wake    r12, [r11], r13
        addi    r6, r6, -1
        bnez    r6, again
        texit   r6
        .data
counter: .quad  0
lock:   .quad   0
