; recursion: Ackermann, a recursive factorial and mutually recursive even/odd
; expect: ackermann(2, 3) = 9
; expect: factorial(20) = 2432902008176640000
; expect: is_even(101) = 0
; expect-status: 0
        .text
main:   li      r9, 0
        li      r1, 2
        li      r2, 3
        call    ack
        mov     r10, r0
        li      r1, s_ack
        li      r2, s_ack_end-s_ack
        sys     1
        mov     r1, r10
        sys     3
        li      r1, 20
        call    fact
        mov     r10, r0
        li      r1, s_fact
        li      r2, s_fact_end-s_fact
        sys     1
        mov     r1, r10
        sys     3
        li      r1, 101
        call    is_even
        mov     r10, r0
        li      r1, s_even
        li      r2, s_even_end-s_even
        sys     1
        mov     r1, r10
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0

; ack(r1 = m, r2 = n) -> r0
ack:    bne     r1, r9, ack_m
        addi    r0, r2, 1           ; m = 0: n + 1
        ret
ack_m:  bne     r2, r9, ack_mn
        subi    r1, r1, 1           ; n = 0: ack(m - 1, 1)
        li      r2, 1
        call    ack
        ret
ack_mn: push    r1                  ; ack(m - 1, ack(m, n - 1))
        subi    r2, r2, 1
        call    ack
        pop     r1
        subi    r1, r1, 1
        mov     r2, r0
        call    ack
        ret

; fact(r1) -> r0
fact:   bne     r1, r9, fact_n
        li      r0, 1
        ret
fact_n: push    r1
        subi    r1, r1, 1
        call    fact
        pop     r1
        mul     r0, r0, r1
        ret

; is_even(r1) -> r0, via is_odd
is_even: bne    r1, r9, ev_n
        li      r0, 1
        ret
ev_n:   subi    r1, r1, 1
        call    is_odd
        ret
is_odd: bne     r1, r9, od_n
        li      r0, 0
        ret
od_n:   subi    r1, r1, 1
        call    is_even
        ret

        .data
s_ack:  .ascii  "ackermann(2, 3) = "
s_ack_end:
s_fact: .ascii  "\nfactorial(20) = "
s_fact_end:
s_even: .ascii  "\nis_even(101) = "
s_even_end:
