/* hello64: a flat binary the VMM starts in 64-bit long mode at 1 MiB, on
 * 4-level identity page tables the VMM built (see arch/x86_64/paging.rs). */
        .include "common.inc"
        .code64
        .globl _start
_start:
        lea     msg(%rip), %rsi
        call    puts
        EXIT_WITH 0

        DEFINE_PUTS puts
msg:    .asciz  "Hello from 64-bit long mode!\n"
