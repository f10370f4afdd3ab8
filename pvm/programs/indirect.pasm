; indirect: a jump table through jr and function pointers through callr
; expect: case 0 case 1 case 2
; expect: square(7) = 49, double(7) = 14
; expect-status: 0
        .text
main:   li      r9, 0
        li      r4, 0
        li      r5, 3
next:   shli    r6, r4, 3           ; jump through table[r4]
        ld64    r6, [r6+table]
        jr      r6
case0:  li      r1, c0
        li      r2, 7
        jmp     print
case1:  li      r1, c1
        li      r2, 7
        jmp     print
case2:  li      r1, c2
        li      r2, 6
print:  sys     1
        addi    r4, r4, 1
        blt     r4, r5, next
        li      r1, 10
        sys     5
        li      r1, s_sq
        li      r2, s_sq_end-s_sq
        sys     1
        li      r8, square
        li      r1, 7
        callr   r8
        mov     r1, r0
        sys     3
        li      r1, s_db
        li      r2, s_db_end-s_db
        sys     1
        li      r8, double
        li      r1, 7
        callr   r8
        mov     r1, r0
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0

square: mul     r0, r1, r1
        ret
double: add     r0, r1, r1
        ret

        .data
        .align  8
table:  .quad   case0, case1, case2
c0:     .ascii  "case 0 "
c1:     .ascii  "case 1 "
c2:     .ascii  "case 2"
s_sq:   .ascii  "square(7) = "
s_sq_end:
s_db:   .ascii  ", double(7) = "
s_db_end:
