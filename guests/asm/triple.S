/* triple: a deliberate triple fault. Started in long mode; loads an empty
 * IDT, then executes ud2. The #UD cannot be delivered, nor can the #DF that
 * follows, so the CPU shuts down and KVM reports KVM_EXIT_SHUTDOWN. */
        .include "common.inc"
        .code64
        .globl _start
_start:
        lea     msg(%rip), %rsi
        call    puts
        lidt    empty_idt(%rip)
        ud2
        EXIT_WITH 0                     /* never reached */

        DEFINE_PUTS puts
msg:    .asciz  "triple: loading an empty IDT, then ud2\n"
empty_idt:
        .word   0
        .quad   0
