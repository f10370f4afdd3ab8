; selfmod: a program that rewrites its own code while it runs
; expect: patched immediates: 45
; expect: copied instruction: 1234
; expect-status: 0
        .text
main:   li      r9, 0
        li      r3, 0               ; sum
        li      r4, 0               ; i
        li      r5, 10
loop:   st32    r4, [r9+bump+4]     ; rewrite the immediate of the next addi to i
bump:   addi    r3, r3, 0           ; becomes addi r3, r3, i
        addi    r4, r4, 1
        blt     r4, r5, loop
        li      r1, s1
        li      r2, s1_end-s1
        sys     1
        mov     r1, r3
        sys     3
        li      r1, 10
        sys     5
        ld64    r6, [r9+template]   ; copy a whole instruction word over `slot`
        st64    r6, [r9+slot]
slot:   li      r7, 0               ; becomes li r7, 1234
        li      r1, s2
        li      r2, s2_end-s2
        sys     1
        mov     r1, r7
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0

        .data
        .align  8
template: .byte 0x02, 7, 0, 0       ; li r7, 1234
        .word   1234
s1:     .ascii  "patched immediates: "
s1_end:
s2:     .ascii  "copied instruction: "
s2_end:
