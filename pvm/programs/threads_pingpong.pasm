; threads_pingpong: two threads hand a turn to each other 1000 times through wait/wake (the signal-wait cost)
; expect: 1000 round trips
; expect-status: 0
        .text
main:   li      r2, partner
        li      r3, 0x800000
        spawn   r4, r2, r3
        li      r10, turn
        li      r6, 1000            ; round trips
        li      r7, 0
        li      r8, 0               ; my turn value
        li      r9, 1               ; the partner's
mine:   ld64    r11, [r10]
        beq     r11, r8, go
        wait    r12, [r10], r9      ; sleeps while it is the partner's turn
        jmp     mine
go:     xchg    r12, [r10], r9      ; hand the turn over
        wake    r12, [r10], r9
        addi    r7, r7, 1
        blt     r7, r6, mine
        join    r5, r4
        mov     r1, r5
        sys     3
        li      r1, msg
        li      r2, 13
        sys     1
        li      r1, 0
        sys     0
partner: li     r10, turn
        li      r6, 1000
        li      r7, 0
        li      r8, 1
        li      r9, 0
pmine:  ld64    r11, [r10]
        beq     r11, r8, pgo
        wait    r12, [r10], r9
        jmp     pmine
pgo:    xchg    r12, [r10], r9
        wake    r12, [r10], r8
        addi    r7, r7, 1
        blt     r7, r6, pmine
        texit   r7
        .data
turn:   .quad   0
msg:    .ascii  " round trips\n"
