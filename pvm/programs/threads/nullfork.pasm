; nullfork: null fork, n_forks times: spawn a thread that exits at once, then join it
; expect: nullfork 1000 ok
; expect-status: 0
; Lines starting with @ are timings (@us: the loop's microseconds), not checked.
        .text
main:   li      r9, 0
        ld64    r10, [r9+n_forks]
        li      r11, 0                  ; forks done
        li      r12, 0                  ; sum of the exit values (all 0)
        li      r13, empty
        li      r14, 0x800000           ; the one stack, reused: each thread is joined before the next
        sys     8
        mov     r6, r0
loop:   bge     r11, r10, done
        spawn   r1, r13, r14
        join    r2, r1
        add     r12, r12, r2
        addi    r11, r11, 1
        jmp     loop
done:   sys     8
        sub     r6, r0, r6
        bnez    r12, bad
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
empty:  texit   r0
        .data
n_forks: .quad 1000
s_name: .ascii  "nullfork "
s_name_end:
s_ok:   .ascii  " ok\n"
s_ok_end:
s_us:   .ascii  "@us "
s_us_end:
