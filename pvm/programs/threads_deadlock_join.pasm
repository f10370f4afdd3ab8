; threads_deadlock_join: the main thread and its child join each other: a deadlock trap, not a hang
; expect-status: 94
; expect-trap: deadlock: every thread is waiting
        .text
main:   li      r2, child
        li      r3, 0x800000
        spawn   r4, r2, r3
        join    r5, r4
        li      r1, 0
        sys     0
child:  li      r6, 0
        join    r5, r6              ; joins the main thread
        texit   r5
