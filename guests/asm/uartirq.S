/* uartirq: the UART's interrupt, IRQ 4, through KVM's in-kernel PIC, as a
 * kernel's serial driver takes it. Started in long mode at 1 MiB with the
 * PC devices (--timers). Sets up a 64-bit IDT, remaps the 8259 PIC to
 * vectors 32-47 with only IRQ 4 unmasked, enables the 16550's THR-empty
 * interrupt (which fires at once: the transmitter is empty) and halts;
 * the handler reads IIR, masks the UART's interrupts again and sends EOI.
 * Every other vector ends the run with status 3. */
        .include "common.inc"
        .set CODE64, 0x08               /* selectors of the VMM-built GDT */
        .set COM1_IER, 0x3f9
        .set COM1_IIR, 0x3fa
        .set COM1_LCR, 0x3fb
        .set COM1_MCR, 0x3fc
        .set IER_THR_EMPTY, 0x02
        .set IIR_THR_EMPTY, 0x02
        .set MCR_OUT2, 0x08             /* gates the UART's IRQ on a PC */
        .set UART_VECTOR, 36            /* 32 + IRQ 4 */
        .set VECTORS, 48

        .code64
        .globl _start
_start:
        cli
        lea     stack_top(%rip), %rsp

        /* IDT: vector 36 to `uart`, every other one to `fault` */
        lea     idt(%rip), %rdi
        xor     %ecx, %ecx
1:      lea     fault(%rip), %rax
        cmp     $UART_VECTOR, %ecx
        jne     2f
        lea     uart(%rip), %rax
2:      call    set_gate
        add     $16, %rdi
        inc     %ecx
        cmp     $VECTORS, %ecx
        jne     1b
        lidt    idt_desc(%rip)

        /* 8259 PIC: ICW1-ICW4, master at 32, slave at 40, only IRQ 4 unmasked */
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
        mov     $0xef, %al
        outb    %al, $0x21
        mov     $0xff, %al
        outb    %al, $0xa1

        lea     m_start(%rip), %rsi
        call    puts

        /* 8N1, OUT2, then the THR-empty interrupt */
        mov     $COM1_LCR, %dx
        mov     $0x03, %al
        outb    %al, %dx
        mov     $COM1_MCR, %dx
        mov     $MCR_OUT2, %al
        outb    %al, %dx
        mov     $COM1_IER, %dx
        mov     $IER_THR_EMPTY, %al
        outb    %al, %dx
        sti
3:      hlt
        cmpb    $0, taken(%rip)
        je      3b
        cli

        lea     m_taken(%rip), %rsi
        call    puts
        movzbl  iir(%rip), %eax
        mov     $2, %ecx
        call    put_hex
        call    newline
        movzbl  iir(%rip), %eax
        and     $0x0f, %al
        cmp     $IIR_THR_EMPTY, %al
        jne     4f
        lea     m_ok(%rip), %rsi
        call    puts
        EXIT_WITH 0
4:      lea     m_wrong(%rip), %rsi
        call    puts
        EXIT_WITH 1

/* uart: IRQ 4. Reads IIR (which acknowledges the THR-empty interrupt),
 * turns the UART's interrupts off, and sends EOI to the master PIC. */
uart:   push    %rax
        push    %rdx
        mov     $COM1_IIR, %dx
        inb     %dx, %al
        mov     %al, iir(%rip)
        mov     $COM1_IER, %dx
        xor     %eax, %eax
        outb    %al, %dx
        movb    $1, taken(%rip)
        mov     $0x20, %al
        outb    %al, $0x20
        pop     %rdx
        pop     %rax
        iretq

fault:  lea     m_fault(%rip), %rsi
        call    puts
        EXIT_WITH 3

        .include "idt64.inc"

        .include "lib64.inc"

m_start: .asciz "uartirq: PIC at 32, only IRQ 4 unmasked, THR-empty interrupt enabled\n"
m_taken: .asciz "uartirq: vector 36 (IRQ 4) taken, IIR = 0x"
m_ok:    .asciz "uartirq: THR empty, as the 16550 says; EOI sent\n"
m_wrong: .asciz "uartirq: IIR does not say THR empty\n"
m_fault: .asciz "uartirq: unexpected exception or interrupt\n"

taken:   .byte 0
iir:     .byte 0
        .p2align 4
idt:       .skip VECTORS * 16
idt_desc:  .word VECTORS * 16 - 1
           .quad idt
        .p2align 4
           .skip 4096
stack_top:
