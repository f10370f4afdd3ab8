; collatz: the start below 300000 with the longest Collatz chain, as ../shared/bench-peers/collatz
; expect: collatz(300000) = 230631 len 443
; expect-status: 0
        .text
main:   li      r10, 300000         ; n
        li      r11, 1              ; best
        li      r12, 1              ; best_len
        li      r13, 1              ; start
        li      r9, 0
        li      r8, 1
        bge     r13, r10, report
outer:  mov     r2, r13             ; x = start
        li      r3, 1               ; len = 1
        beq     r2, r8, chained
chain:  remsi   r4, r2, 2           ; x % 2
        bne     r4, r9, odd
        divsi   r2, r2, 2           ; x = x / 2
        addi    r3, r3, 1
        bne     r2, r8, chain
        jmp     chained
odd:    muli    r2, r2, 3           ; x = 3 * x + 1
        addi    r2, r2, 1
        addi    r3, r3, 1
        bne     r2, r8, chain
chained: bge    r12, r3, notbest    ; if len > best_len
        mov     r11, r13
        mov     r12, r3
notbest: addi   r13, r13, 1
        blt     r13, r10, outer
report: li      r1, s1
        li      r2, s1_end-s1
        sys     1
        mov     r1, r10
        sys     3
        li      r1, s2
        li      r2, s2_end-s2
        sys     1
        mov     r1, r11
        sys     3
        li      r1, s3
        li      r2, s3_end-s3
        sys     1
        mov     r1, r12
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0
        .data
s1:     .ascii  "collatz("
s1_end:
s2:     .ascii  ") = "
s2_end:
s3:     .ascii  " len "
s3_end:
