; trap_invalid: overwrites its next instruction with a byte that is no opcode, then runs into it
; expect-status: 85
; expect-trap: trap at pc 0x1018 (unknown opcode 0xff): invalid instruction reached: unknown opcode 0xff, after 3 retired instructions
        .text
main:   li      r1, 0xff
        li      r2, victim
        st8     r1, [r2]
victim: li      r1, 0
        sys     0
