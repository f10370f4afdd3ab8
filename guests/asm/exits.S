/* exits: 100000 port-I/O exits in a tight loop (out to the POST port 0x80),
 * then a line and status 0. A PVH ELF, so QEMU microvm can run it too; the
 * benchmark divides the run time by the number of exits. */
        .include "common.inc"
        .include "pvh_note.inc"
        .set COUNT, 100000
        .code32
        .globl _start
_start:
        mov     $COUNT, %ecx
        xor     %eax, %eax
1:      outb    %al, $POST_PORT
        dec     %ecx
        jnz     1b
        mov     $msg, %esi
        call    puts
        EXIT_WITH 0

        DEFINE_PUTS puts
msg:    .asciz  "exits: 100000 port writes done\n"
