; threads_barrier: four threads write their slot, meet at a barrier (xadd, wait/wake), then each sums every slot
; expect: 240
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
        li      r7, 0
joins:  join    r5, r4              ; each thread's sum of the four slots
        add     r7, r7, r5
        addi    r4, r4, 1
        li      r9, 5
        blt     r4, r9, joins
        mov     r1, r7
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0
worker: tid     r6                  ; 1..4
        li      r10, slots
        shli    r7, r6, 3
        add     r7, r7, r10
        muli    r8, r6, 6
        st64    r8, [r7-8]          ; slot[id-1] = 6 * id
        li      r11, gen
        ld64    r12, [r11]          ; this round's generation
        li      r13, count
        li      r14, 1
        xadd    r9, [r13], r14
        li      r15, 3
        bne     r9, r15, hold
        li      r9, 0               ; the last one in: reset, next generation, wake all
        st64    r9, [r13]
        xadd    r9, [r11], r14
        li      r15, -1
        wake    r9, [r11], r15
        jmp     sum
hold:   ld64    r9, [r11]
        bne     r9, r12, sum
        wait    r9, [r11], r12
        jmp     hold
sum:    ld64    r1, [r10]
        ld64    r2, [r10+8]
        add     r1, r1, r2
        ld64    r2, [r10+16]
        add     r1, r1, r2
        ld64    r2, [r10+24]
        add     r1, r1, r2
        texit   r1
        .data
slots:  .quad   0, 0, 0, 0
count:  .quad   0
gen:    .quad   0
