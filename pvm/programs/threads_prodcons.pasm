; threads_prodcons: a producer passes 1..1000 through a one-slot mailbox to a consumer, which sums them
; expect: 500500
; expect-status: 0
        .text
main:   li      r2, consumer
        li      r3, 0x800000
        spawn   r4, r2, r3
        li      r10, full
        li      r11, data
        li      r6, 1               ; the next value
        li      r7, 1000
        li      r8, 1
        li      r9, 0
put:    ld64    r12, [r10]
        beqz    r12, empty
        wait    r12, [r10], r8      ; sleeps while the slot is full
        jmp     put
empty:  st64    r6, [r11]
        xchg    r12, [r10], r8
        wake    r12, [r10], r8
        addi    r6, r6, 1
        bge     r7, r6, put
        join    r1, r4
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0
consumer: li    r10, full
        li      r11, data
        li      r5, 0               ; the sum
        li      r7, 1000
        li      r8, 1
        li      r9, 0
take:   ld64    r12, [r10]
        bnez    r12, got
        wait    r12, [r10], r9      ; sleeps while the slot is empty
        jmp     take
got:    ld64    r13, [r11]
        add     r5, r5, r13
        xchg    r12, [r10], r9
        wake    r12, [r10], r8
        addi    r7, r7, -1
        bnez    r7, take
        texit   r5
        .data
full:   .quad   0
data:   .quad   0
