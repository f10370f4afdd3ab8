; echo: copies stdin to stdout with the read syscall, then counts the bytes
; expect: echo: 0 bytes
; expect-status: 0
        .text
main:   li      r9, 0
        li      r10, 0              ; total
again:  li      r1, buf
        li      r2, 64
        sys     2                   ; read: r0 = bytes read, 0 at end of input
        beq     r0, r9, done
        add     r10, r10, r0
        mov     r2, r0
        li      r1, buf
        sys     1
        jmp     again
done:   li      r1, msg
        li      r2, msg_end-msg
        sys     1
        mov     r1, r10
        sys     3
        li      r1, bytes
        li      r2, bytes_end-bytes
        sys     1
        li      r1, 0
        sys     0
        .data
msg:    .ascii  "echo: "
msg_end:
bytes:  .ascii  " bytes\n"
bytes_end:
buf:    .zero   64
