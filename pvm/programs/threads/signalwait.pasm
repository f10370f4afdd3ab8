; signalwait: two threads hand a turn word back and forth n_rounds times through wait/wake
; expect: signalwait 1000 ok
; expect-status: 0
; Each side makes n_rounds hand-offs (set the turn to the other, wake it, wait
; for the turn to come back): 2 * n_rounds hand-offs in all. @us: their microseconds.
        .text
main:   li      r9, 0
        li      r7, 1
        li      r8, 0
        ld64    r10, [r9+n_rounds]
        li      r13, partner
        li      r14, 0x800000
        sys     8
        mov     r6, r0
        spawn   r12, r13, r14
        li      r11, 0
m_loop: bge     r11, r10, m_done
m_wait: ld64    r1, [r9+turn]           ; wait while it is the partner's turn (1)
        beqz    r1, m_go
        wait    r2, [r9+turn], r7
        jmp     m_wait
m_go:   xchg    r2, [r9+turn], r7       ; turn = 1
        wake    r2, [r9+turn], r7
        addi    r11, r11, 1
        jmp     m_loop
m_done: join    r2, r12
        sys     8
        sub     r6, r0, r6
        bne     r2, r10, bad            ; the partner counted as many hand-offs
        li      r1, s_name
        li      r2, s_name_end-s_name
        sys     1
        mov     r1, r10
        sys     3
        li      r1, s_ok
        li      r2, s_ok_end-s_ok
        sys     1
        li      r1, s_us
        li      r2, s_us_end-s_us
        sys     1
        mov     r1, r6
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0
bad:    li      r1, 1
        sys     0
partner: li     r9, 0
        li      r7, 1
        li      r8, 0
        ld64    r10, [r9+n_rounds]
        li      r11, 0
p_loop: bge     r11, r10, p_done
p_wait: ld64    r1, [r9+turn]           ; wait while it is main's turn (0)
        bnez    r1, p_go
        wait    r2, [r9+turn], r8
        jmp     p_wait
p_go:   xchg    r2, [r9+turn], r8       ; turn = 0
        wake    r2, [r9+turn], r7
        addi    r11, r11, 1
        jmp     p_loop
p_done: texit   r11
        .data
        .align 8
turn:   .quad 0
n_rounds: .quad 1000
s_name: .ascii  "signalwait "
s_name_end:
s_ok:   .ascii  " ok\n"
s_ok_end:
s_us:   .ascii  "@us "
s_us_end:
