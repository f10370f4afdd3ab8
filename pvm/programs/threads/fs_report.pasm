; fs_report: the file servers' common part, assembled after each of fs_dispatch, fs_single
; and fs_fsm: the parameters and request list (the bench rewrites the .quad lines), the
; completion times, and print_report: "served N requests, M misses, checksum C", then
; @lat (completion - arrival, us) per request and @span (start to last completion).
        .text
print_report: li r9, 0
        li      r1, s_served
        li      r2, s_served_end-s_served
        sys     1
        ld64    r10, [r9+n_req]
        mov     r1, r10
        sys     3
        li      r12, 0                  ; count the misses
        li      r13, 0
miss_l: bge     r12, r10, miss_done
        shli    r4, r12, 3
        ld64    r5, [r4+kinds]
        add     r13, r13, r5
        addi    r12, r12, 1
        jmp     miss_l
miss_done: li   r1, s_req
        li      r2, s_req_end-s_req
        sys     1
        mov     r1, r13
        sys     3
        li      r1, s_misses
        li      r2, s_misses_end-s_misses
        sys     1
        ld64    r1, [r9+checksum]
        sys     3
        li      r1, 10
        sys     5
        ld64    r11, [r9+t0]
        li      r12, 0
        li      r13, 0                  ; the last completion
lat_l:  bge     r12, r10, lat_done
        li      r1, s_lat
        li      r2, s_lat_end-s_lat
        sys     1
        shli    r4, r12, 3
        ld64    r1, [r4+done]
        sub     r1, r1, r11
        bge     r13, r1, lat_max
        mov     r13, r1
lat_max: sys    3
        li      r1, 10
        sys     5
        addi    r12, r12, 1
        jmp     lat_l
lat_done: li    r1, s_span
        li      r2, s_span_end-s_span
        sys     1
        mov     r1, r13
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0
        .data
        .align 8
checksum: .quad 0
t0:     .quad 0
n_req:  .quad 8
n_workers: .quad 4
disk_us: .quad 1000
work:   .quad 100
kinds:  .quad 0, 1, 0, 0, 1, 0, 1, 0
        .align 8
done:   .zero   16384                   ; completion times, at most 2048 requests
s_served: .ascii "served "
s_served_end:
s_req:  .ascii  " requests, "
s_req_end:
s_misses: .ascii " misses, checksum "
s_misses_end:
s_lat:  .ascii  "@lat "
s_lat_end:
s_span: .ascii  "@span "
s_span_end:
