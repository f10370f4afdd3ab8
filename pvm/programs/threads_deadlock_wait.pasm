; threads_deadlock_wait: the only thread waits on a word that nobody will wake: a deadlock trap, not a hang
; expect-status: 94
; expect-trap: deadlock: every thread is waiting
        .text
main:   li      r10, word
        li      r11, 0
        wait    r12, [r10], r11
        li      r1, 0
        sys     0
        .data
word:   .quad   0
