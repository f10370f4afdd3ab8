; fs_fsm: a simulated file server as a finite-state machine: one thread, non-blocking disk reads, an event loop with timers
; expect: served 8 requests, 3 misses, checksum 10388512634
; expect-status: 0
; Assembled with fs_report.pasm after it (parameters, request list, print_report).
; A miss does not block: it is parked with the time its disk read completes
; (now + disk_us, from sys 8). Each turn of the loop first finishes every parked
; request whose time has come, then takes the next new request; when there is
; no new one and nothing is due, it sleeps exactly until the earliest due
; time. The disk delay is the same for all, so the parked ones are due in
; FIFO order: a queue [ph, pt) of (request, due).
        .text
main:   li      r9, 0
        ld64    r10, [r9+n_req]
        sys     8
        st64    r0, [r9+t0]
        li      r12, 0                  ; next new request
        li      r13, 0                  ; ph: first parked
        li      r14, 0                  ; pt: one past the last parked
ev_loop: sys    8
        mov     r8, r0                  ; now
due_l:  bge     r13, r14, take          ; finish the parked requests that are due
        shli    r4, r13, 4
        ld64    r5, [r4+parked+8]
        blt     r8, r5, take
        ld64    r11, [r4+parked]
        addi    r13, r13, 1
        jmp     serve
take:   bge     r12, r10, idle
        mov     r11, r12
        addi    r12, r12, 1
        shli    r4, r11, 3
        ld64    r5, [r4+kinds]
        beqz    r5, serve
        shli    r4, r14, 4              ; a miss: start the read, park the request
        st64    r11, [r4+parked]
        ld64    r5, [r9+disk_us]
        add     r5, r5, r8
        st64    r5, [r4+parked+8]
        addi    r14, r14, 1
        jmp     ev_loop
idle:   bge     r13, r14, f_done        ; nothing new: sleep until the next read completes
        shli    r4, r13, 4
        ld64    r5, [r4+parked+8]
        sub     r1, r5, r8
        sys     7
        jmp     ev_loop
serve:  addi    r2, r11, 1              ; compute the reply to request r11
        ld64    r3, [r9+work]
        li      r5, 6364136223846793005
        li      r6, 1442695040888963407
f_work: beqz    r3, f_reply
        mul     r2, r2, r5
        add     r2, r2, r6
        subi    r3, r3, 1
        jmp     f_work
f_reply: shri   r2, r2, 33
        ld64    r3, [r9+checksum]
        add     r3, r3, r2
        st64    r3, [r9+checksum]
        sys     8
        shli    r4, r11, 3
        st64    r0, [r4+done]
        jmp     ev_loop
f_done: jmp     print_report
        .data
        .align 8
parked: .zero   32768                   ; (request, due) pairs, at most 2048
