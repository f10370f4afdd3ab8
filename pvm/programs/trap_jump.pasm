; trap_jump: jumps through a register into the data section
; expect-status: 86
; expect-trap: jump to 0x1010, which is not an instruction of the code section
        .text
main:   li      r1, data
        jr      r1
        .data
data:   .quad   0
