; parsum: a CPU-bound sum of ((i*i) xor i) & 1023 over i < n_items, split evenly over n_threads threads
; expect: parsum 100000 over 2 = 51095008
; expect-status: 0
; Thread k sums [k*n/T, (k+1)*n/T) and exits with its part; main joins and adds.
; @us: the microseconds from the first spawn to the last join.
        .text
main:   li      r9, 0
        ld64    r10, [r9+n_items]
        ld64    r11, [r9+n_threads]
        li      r13, worker
        sys     8
        mov     r6, r0
        li      r12, 0                  ; k
spawn_l: bge    r12, r11, joins
        shli    r14, r12, 12            ; stack top of thread k: 0x800000 + k*4096 + 4080
        addi    r14, r14, 0x800ff0
        mul     r1, r12, r10            ; lo = k*n/T
        divu    r1, r1, r11
        st64    r1, [r14]
        addi    r2, r12, 1              ; hi = (k+1)*n/T
        mul     r2, r2, r10
        divu    r2, r2, r11
        st64    r2, [r14+8]
        spawn   r3, r13, r14
        shli    r4, r12, 3
        st64    r3, [r4+tids]
        addi    r12, r12, 1
        jmp     spawn_l
joins:  li      r12, 0
        li      r5, 0                   ; total
join_l: bge     r12, r11, report
        shli    r4, r12, 3
        ld64    r3, [r4+tids]
        join    r2, r3
        add     r5, r5, r2
        addi    r12, r12, 1
        jmp     join_l
report: sys     8
        sub     r6, r0, r6
        li      r1, s_name
        li      r2, s_name_end-s_name
        sys     1
        mov     r1, r10
        sys     3
        li      r1, s_over
        li      r2, s_over_end-s_over
        sys     1
        mov     r1, r11
        sys     3
        li      r1, s_eq
        li      r2, s_eq_end-s_eq
        sys     1
        mov     r1, r5
        sys     3
        li      r1, s_us
        li      r2, s_us_end-s_us
        sys     1
        mov     r1, r6
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0
worker: ld64    r2, [r1]                ; i = lo
        ld64    r3, [r1+8]              ; hi
        li      r4, 0                   ; part
w_loop: bgeu    r2, r3, w_done
        mul     r5, r2, r2
        xor     r5, r5, r2
        andi    r5, r5, 1023
        add     r4, r4, r5
        addi    r2, r2, 1
        jmp     w_loop
w_done: texit   r4
        .data
        .align 8
n_items: .quad 100000
n_threads: .quad 2
tids:   .zero   512                     ; at most 64 threads
s_name: .ascii  "parsum "
s_name_end:
s_over: .ascii  " over "
s_over_end:
s_eq:   .ascii  " = "
s_eq_end:
s_us:   .ascii  "\n@us "
s_us_end:
