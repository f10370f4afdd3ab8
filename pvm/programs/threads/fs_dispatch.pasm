; fs_dispatch: a simulated file server as a dispatcher thread and n_workers worker threads
; expect: served 8 requests, 3 misses, checksum 10388512634
; expect-status: 0
; Assembled with fs_report.pasm after it (parameters, request list, print_report).
; Every request arrives at the start. A hit costs `work` rounds of compute; a
; miss first blocks for disk_us microseconds (sys 7, the "disk"), then the
; same compute. The dispatcher publishes requests one by one (tail += 1,
; wake one worker); a worker claims the next one with cas on head, or waits
; on tail while none is published. @lat: completion - arrival of each
; request (us); @span: from the start to the last completion.
        .text
main:   li      r9, 0
        li      r7, 1
        ld64    r10, [r9+n_req]
        ld64    r11, [r9+n_workers]
        sys     8
        st64    r0, [r9+t0]
        li      r13, worker
        li      r12, 0
spawn_l: bge    r12, r11, publish
        shli    r14, r12, 12
        addi    r14, r14, 0x800ff0
        spawn   r3, r13, r14
        shli    r4, r12, 3
        st64    r3, [r4+tids]
        addi    r12, r12, 1
        jmp     spawn_l
publish: li     r12, 0
pub_l:  bge     r12, r10, pub_done
        shli    r4, r12, 3              ; "read" request i off the wire into the queue
        ld64    r5, [r4+kinds]
        st64    r5, [r4+queue]
        xadd    r5, [r9+tail], r7       ; publish it
        wake    r5, [r9+tail], r7
        addi    r12, r12, 1
        jmp     pub_l
pub_done: li    r5, -1
        wake    r5, [r9+tail], r5
        li      r12, 0
join_l: bge     r12, r11, report
        shli    r4, r12, 3
        ld64    r3, [r4+tids]
        join    r2, r3
        addi    r12, r12, 1
        jmp     join_l
report: jmp     print_report
worker: li      r9, 0
        li      r7, 1
        ld64    r10, [r9+n_req]
w_loop: ld64    r1, [r9+head]
        bge     r1, r10, w_exit
        ld64    r2, [r9+tail]
        blt     r1, r2, w_take
        wait    r3, [r9+tail], r2       ; nothing published past head: sleep until tail moves
        jmp     w_loop
w_take: addi    r4, r1, 1
        mov     r3, r1
        cas     r3, [r9+head], r4
        bne     r3, r1, w_loop          ; another worker took it
        mov     r12, r1                 ; serve request r12
        shli    r4, r12, 3
        ld64    r5, [r4+queue]
        beqz    r5, w_hit
        ld64    r1, [r9+disk_us]
        sys     7                       ; blocking disk read
w_hit:  addi    r2, r12, 1              ; compute the reply
        ld64    r3, [r9+work]
        li      r5, 6364136223846793005
        li      r6, 1442695040888963407
w_work: beqz    r3, w_reply
        mul     r2, r2, r5
        add     r2, r2, r6
        subi    r3, r3, 1
        jmp     w_work
w_reply: shri   r2, r2, 33
        xadd    r3, [r9+checksum], r2
        sys     8
        shli    r4, r12, 3
        st64    r0, [r4+done]
        jmp     w_loop
w_exit: texit   r0
        .data
        .align 8
head:   .quad 0
tail:   .quad 0
queue:  .zero   16384                   ; at most 2048 requests
tids:   .zero   512                     ; at most 64 workers
