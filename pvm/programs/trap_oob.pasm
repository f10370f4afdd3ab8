; trap_oob: loads from beyond the end of memory
; expect-status: 81
; expect-trap: trap at pc 0x1010 (ld64 r2, [r1+8]): out-of-bounds access of 8 bytes at 0x1000000, after 2 retired instructions
        .text
main:   li      r1, 0xfffff8        ; 16 MiB - 8: the last quad is fine
        ld64    r2, [r1]
        ld64    r2, [r1+8]          ; one past the end
        li      r1, 0
        sys     0
