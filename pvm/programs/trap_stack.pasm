; trap_stack: recursion without end until the stack reaches the program
; expect-status: 82
; expect-trap: stack overflow
        .text
main:   call    main
