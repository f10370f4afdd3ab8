; trap_syscall: asks for a syscall that does not exist
; expect-status: 84
; expect-trap: trap at pc 0x1000 (sys 99): bad syscall number 99, after 0 retired instructions
        .text
main:   sys     99
