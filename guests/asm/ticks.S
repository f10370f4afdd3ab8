/* ticks: preemptive round-robin between two tasks, driven by the timer.
 * Started in long mode at 1 MiB. Sets up a 64-bit IDT, remaps the 8259 PIC
 * to vectors 32-47, programs PIT channel 0 at 100 Hz, and takes IRQ 0
 * through KVM's in-kernel PIC and PIT. The timer handler saves all the
 * registers of the running task on its stack, and once that task has
 * printed its line for this turn it switches stacks to the other task.
 * So the output alternates A, B, A, B whatever the host's scheduling. */
        .include "common.inc"
        .set TURNS, 8                   /* lines printed before the exit */
        .set CODE64, 0x08               /* selectors of the VMM-built GDT */
        .set DATA, 0x18
        .set PIT_HZ_DIVISOR, 11932      /* 1193182 Hz / 11932 = 100 Hz */

        .code64
        .globl _start
_start:
        cli
        lea     stack_a_top(%rip), %rsp

        /* IDT: vectors 0-31 go to `fault`, vector 32 (IRQ 0) to `timer` */
        lea     idt(%rip), %rdi
        lea     fault(%rip), %rax
        xor     %ecx, %ecx
1:      cmp     $32, %ecx
        jne     2f
        lea     timer(%rip), %rax
2:      call    set_gate
        add     $16, %rdi
        inc     %ecx
        cmp     $33, %ecx
        jne     1b
        lidt    idt_desc(%rip)

        /* 8259 PIC: ICW1-ICW4, master at 32, slave at 40, only IRQ 0 unmasked */
        mov     $0x11, %al
        outb    %al, $0x20
        outb    %al, $0xa0
        mov     $32, %al
        outb    %al, $0x21
        mov     $40, %al
        outb    %al, $0xa1
        mov     $4, %al
        outb    %al, $0x21
        mov     $2, %al
        outb    %al, $0xa1
        mov     $1, %al
        outb    %al, $0x21
        outb    %al, $0xa1
        mov     $0xfe, %al
        outb    %al, $0x21
        mov     $0xff, %al
        outb    %al, $0xa1

        /* PIT channel 0, lobyte/hibyte, mode 2 (rate generator) */
        mov     $0x34, %al
        outb    %al, $0x43
        mov     $(PIT_HZ_DIVISOR & 0xff), %al
        outb    %al, $0x40
        mov     $(PIT_HZ_DIVISOR >> 8), %al
        outb    %al, $0x40

        /* task B's first switch-in: an interrupt frame and 15 zero registers */
        lea     stack_b_top(%rip), %rax
        mov     %rax, %rsp
        push    $DATA                   /* ss */
        push    %rax                    /* rsp */
        push    $0x202                  /* rflags: IF */
        push    $CODE64                 /* cs */
        lea     task_b(%rip), %rdx
        push    %rdx                    /* rip */
        mov     $15, %ecx
3:      push    $0
        loop    3b
        mov     %rsp, saved_rsp+8(%rip)

        lea     stack_a_top(%rip), %rsp
        lea     m_start(%rip), %rsi
        call    puts
        sti
        /* fall through: this is task A */
task_a: mov     $0, %r12                /* task index */
        mov     $'A', %r13
        jmp     task_loop
task_b: mov     $1, %r12
        mov     $'B', %r13
task_loop:
        xor     %r14, %r14              /* this task's own turn counter */
4:      lea     done(%rip), %rbx
        cmpb    $0, (%rbx,%r12)
        jne     5f
        inc     %r14
        lea     m_task(%rip), %rsi
        call    puts
        mov     %r13, %rax
        mov     $COM1, %dx
        outb    %al, %dx
        lea     m_turn(%rip), %rsi
        call    puts
        lea     '0'(%r14), %rax
        mov     $COM1, %dx
        outb    %al, %dx
        call    newline
        incq    lines(%rip)
        movb    $1, (%rbx,%r12)         /* turn done: the next tick may switch */
5:      hlt
        jmp     4b

/* timer: IRQ 0. Saves every register, switches task if the running one is
 * done with its turn, sends EOI, restores the (other) task's registers. */
timer:  push    %rax
        push    %rbx
        push    %rcx
        push    %rdx
        push    %rsi
        push    %rdi
        push    %rbp
        push    %r8
        push    %r9
        push    %r10
        push    %r11
        push    %r12
        push    %r13
        push    %r14
        push    %r15
        mov     current(%rip), %rax
        lea     done(%rip), %rbx
        cmpb    $0, (%rbx,%rax)
        je      7f
        cmpq    $TURNS, lines(%rip)
        jae     finish
        lea     saved_rsp(%rip), %rcx
        mov     %rsp, (%rcx,%rax,8)
        xor     $1, %rax
        mov     %rax, current(%rip)
        movb    $0, (%rbx,%rax)
        mov     (%rcx,%rax,8), %rsp
7:      mov     $0x20, %al              /* EOI to the master PIC */
        outb    %al, $0x20
        pop     %r15
        pop     %r14
        pop     %r13
        pop     %r12
        pop     %r11
        pop     %r10
        pop     %r9
        pop     %r8
        pop     %rbp
        pop     %rdi
        pop     %rsi
        pop     %rdx
        pop     %rcx
        pop     %rbx
        pop     %rax
        iretq

finish: lea     m_done(%rip), %rsi
        call    puts
        EXIT_WITH 0

fault:  lea     m_fault(%rip), %rsi
        call    puts
        EXIT_WITH 3

        .include "idt64.inc"

        .include "lib64.inc"

m_start: .asciz "ticks: PIT at 100 Hz, two tasks switched on timer interrupts\n"
m_task:  .asciz "task "
m_turn:  .asciz ": turn "
m_done:  .asciz "ticks: 8 turns done, exiting\n"
m_fault: .asciz "ticks: unexpected exception\n"

        .p2align 3
current:   .quad 0
lines:     .quad 0
saved_rsp: .quad 0, 0
done:      .byte 0, 0
        .p2align 4
idt:       .skip 33 * 16
idt_desc:  .word 33 * 16 - 1
           .quad idt
        .p2align 4
           .skip 4096
stack_a_top:
           .skip 4096
stack_b_top:
