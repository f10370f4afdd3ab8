; trap_div: divides by zero
; expect: before
; expect-status: 80
; expect-trap: trap at pc 0x1028 (divs r3, r1, r2): division by zero, after 5 retired instructions
        .text
main:   li      r1, msg
        li      r2, 7
        sys     1
        li      r1, 7
        li      r2, 0
        divs    r3, r1, r2
        li      r1, 0
        sys     0
        .data
msg:    .ascii  "before\n"
