; balance: the load-balancing driver: spawns one thread per task at the task's arrival time; each computes work units
; expect: balance 6 tasks, checksum 7506792478
; expect-status: 0
; The bench rewrites n_tasks, unit and the arrival/work lists. Main sleeps
; until each arrival (sys 7) and spawns task i (its index in the argument
; block at its stack top); the task notes when it ended. @span: from the
; start to the last end (us). The waits (first run - spawn) come from the
; thread model's per-thread figures (`pvm run --stats`).
        .text
main:   li      r9, 0
        ld64    r10, [r9+n_tasks]
        li      r13, task
        sys     8
        st64    r0, [r9+t0]
        mov     r11, r0
        li      r12, 0
arrive: bge     r12, r10, joins
        shli    r4, r12, 3
        ld64    r5, [r4+arrivals]
        sys     8
        sub     r6, r0, r11             ; now, since the start
        bge     r6, r5, go
        sub     r1, r5, r6
        sys     7                       ; wait for the arrival
go:     shli    r4, r12, 3
        shli    r14, r12, 12            ; stack top of task i: 0x400000 + i*4096 + 4080
        addi    r14, r14, 0x400ff0
        st64    r12, [r14]
        spawn   r3, r13, r14
        st64    r3, [r4+tids]
        addi    r12, r12, 1
        jmp     arrive
joins:  li      r12, 0
        li      r7, 0                   ; checksum
join_l: bge     r12, r10, report
        shli    r4, r12, 3
        ld64    r3, [r4+tids]
        join    r2, r3
        add     r7, r7, r2
        addi    r12, r12, 1
        jmp     join_l
report: li      r1, s_name
        li      r2, s_name_end-s_name
        sys     1
        mov     r1, r10
        sys     3
        li      r1, s_sum
        li      r2, s_sum_end-s_sum
        sys     1
        mov     r1, r7
        sys     3
        li      r1, 10
        sys     5
        li      r12, 0
        li      r13, 0                  ; the last end
end_l:  bge     r12, r10, w_done
        shli    r4, r12, 3
        ld64    r1, [r4+ended]
        sub     r1, r1, r11
        bge     r13, r1, w_next
        mov     r13, r1
w_next: addi    r12, r12, 1
        jmp     end_l
w_done: li      r1, s_span
        li      r2, s_span_end-s_span
        sys     1
        mov     r1, r13
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0
task:   ld64    r12, [r1]               ; i
        shli    r4, r12, 3
        ld64    r3, [r4+works]
        li      r9, 0
        ld64    r7, [r9+unit]
        mul     r3, r3, r7              ; iterations = work * unit
        addi    r2, r12, 1
        li      r5, 6364136223846793005
        li      r6, 1442695040888963407
t_loop: beqz    r3, t_done
        mul     r2, r2, r5
        add     r2, r2, r6
        subi    r3, r3, 1
        jmp     t_loop
t_done: shri    r2, r2, 33
        sys     8
        st64    r0, [r4+ended]
        texit   r2
        .data
        .align 8
t0:     .quad 0
n_tasks: .quad 6
unit:   .quad 100
arrivals: .quad 0, 0, 100, 200, 200, 200
works:  .quad 1, 5, 2, 1, 3, 1
        .align 8
ended:  .zero   8192                    ; at most 1024 tasks
tids:   .zero   8192
s_name: .ascii  "balance "
s_name_end:
s_sum:  .ascii  " tasks, checksum "
s_sum_end:
s_span: .ascii  "@span "
s_span_end:
