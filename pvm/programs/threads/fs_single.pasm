; fs_single: a simulated file server as one thread that serves the requests in order, blocking on each miss
; expect: served 8 requests, 3 misses, checksum 10388512634
; expect-status: 0
; Assembled with fs_report.pasm after it (parameters, request list, print_report).
        .text
main:   li      r9, 0
        ld64    r10, [r9+n_req]
        sys     8
        st64    r0, [r9+t0]
        li      r12, 0
s_loop: bge     r12, r10, s_done
        shli    r4, r12, 3
        ld64    r5, [r4+kinds]
        beqz    r5, s_hit
        ld64    r1, [r9+disk_us]
        sys     7                       ; blocking disk read: nothing else can run
s_hit:  addi    r2, r12, 1              ; compute the reply
        ld64    r3, [r9+work]
        li      r5, 6364136223846793005
        li      r6, 1442695040888963407
s_work: beqz    r3, s_reply
        mul     r2, r2, r5
        add     r2, r2, r6
        subi    r3, r3, 1
        jmp     s_work
s_reply: shri   r2, r2, 33
        ld64    r3, [r9+checksum]
        add     r3, r3, r2
        st64    r3, [r9+checksum]
        sys     8
        shli    r4, r12, 3
        st64    r0, [r4+done]
        addi    r12, r12, 1
        jmp     s_loop
s_done: jmp     print_report
