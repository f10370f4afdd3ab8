; trap_fuel: loops forever; run with a fuel limit it traps after exactly 1000 instructions
; args: --fuel 1000
; expect-status: 83
; expect-trap: trap at pc 0x1010 (jmp 0x1008): fuel exhausted (--fuel limit on retired instructions reached), after 1000 retired instructions
        .text
main:   li      r1, 0
spin:   addi    r1, r1, 1
        jmp     spin
