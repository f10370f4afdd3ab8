; fib: naive recursive Fibonacci, fib(37), as ../shared/bench-peers/fib
; expect: fib(37) = 24157817
; expect-status: 0
        .entry main
        .text
main:   li      r12, 2              ; constant for the base-case test
        li      r1, 37
        call    fib
        mov     r10, r0
        li      r1, s_fib
        li      r2, s_fib_end-s_fib
        sys     1                   ; write "fib("
        li      r1, 37
        sys     3                   ; print_int
        li      r1, s_eq
        li      r2, s_eq_end-s_eq
        sys     1
        mov     r1, r10
        sys     3
        li      r1, 10
        sys     5                   ; putc '\n'
        li      r1, 0
        sys     0                   ; exit(0)

; fib(r1) -> r0. Clobbers r1, r2.
fib:    blt     r1, r12, small
        push    r1
        subi    r1, r1, 1
        call    fib
        pop     r1
        push    r0
        subi    r1, r1, 2
        call    fib
        pop     r2
        add     r0, r0, r2
        ret
small:  mov     r0, r1
        ret

        .data
s_fib:  .ascii  "fib("
s_fib_end:
s_eq:   .ascii  ") = "
s_eq_end:
