/* hello16: a flat binary the VMM starts in 16-bit real mode at 0x7c00,
 * CS = DS = SS = 0, like a boot sector. */
        .include "common.inc"
        .code16
        .globl _start
_start:
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     $msg, %si
        call    puts
        EXIT_WITH 0

        DEFINE_PUTS puts
msg:    .asciz  "Hello from real mode!\n"
