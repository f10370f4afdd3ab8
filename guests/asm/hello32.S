/* hello32: a flat binary the VMM starts in 32-bit protected mode at 1 MiB,
 * with its own flat GDT loaded (CS = 0x10, data segments = 0x18). */
        .include "common.inc"
        .code32
        .globl _start
_start:
        mov     $msg, %esi
        call    puts
        EXIT_WITH 0

        DEFINE_PUTS puts
msg:    .asciz  "Hello from 32-bit protected mode!\n"
