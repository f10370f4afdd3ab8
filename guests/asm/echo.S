/* echo: reads a line from the serial port by polling the UART's line
 * status register, echoes it in upper case, then exits. Started in long
 * mode at 1 MiB. `vmm run echo` feeds it the VMM's standard input. */
        .include "common.inc"
        .set COM1_LSR_DATA_READY, 1
        .code64
        .globl _start
_start:
        lea     prompt(%rip), %rsi
        call    puts
1:      mov     $COM1_LSR, %dx
        inb     %dx, %al
        test    $COM1_LSR_DATA_READY, %al
        jz      1b                      /* nothing received yet: poll again */
        mov     $COM1, %dx
        inb     %dx, %al                /* the received byte */
        cmp     $'\n', %al
        je      2f
        cmp     $'a', %al
        jb      3f
        cmp     $'z', %al
        ja      3f
        sub     $32, %al                /* to upper case */
3:      outb    %al, %dx
        jmp     1b
2:      outb    %al, %dx
        EXIT_WITH 0

        DEFINE_PUTS puts
prompt: .asciz  "serial echo: type a line\n"
