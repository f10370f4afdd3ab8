/* traps: a tour of sensitive instructions, started in long mode at 1 MiB.
 * Each step prints what came back, so `vmm run traps --trace` shows every
 * trap next to its effect. */
        .include "common.inc"
        .code64
        .globl _start
_start:
        /* 1-byte out and in: the UART's scratch register */
        lea     m_io8(%rip), %rsi
        call    puts
        mov     $0x5a, %al
        mov     $COM1_SCR, %dx
        outb    %al, %dx
        xor     %eax, %eax
        inb     %dx, %al
        mov     $2, %ecx
        call    put_hex
        call    newline

        /* 2-byte out and in: the port-bus scratch device, register 8 */
        lea     m_io16(%rip), %rsi
        call    puts
        mov     $0xbeef, %ax
        mov     $(PIO_SCRATCH + 8), %dx
        outw    %ax, %dx
        xor     %eax, %eax
        inw     %dx, %ax
        mov     $4, %ecx
        call    put_hex
        call    newline

        /* 4-byte out and in */
        lea     m_io32(%rip), %rsi
        call    puts
        mov     $0xdeadbeef, %eax
        mov     $(PIO_SCRATCH + 8), %dx
        outl    %eax, %dx
        xor     %eax, %eax
        inl     %dx, %eax
        mov     $8, %ecx
        call    put_hex
        call    newline

        /* string I/O: KVM may batch the elements into one exit (count > 1)
         * or exit once per element; the trace shows which */
        lea     m_rep(%rip), %rsi
        mov     $(m_rep_end - m_rep), %ecx
        mov     $COM1, %dx
        rep outsb

        /* MMIO: the scratch device's ID register, then a 64-bit write and read */
        lea     m_mmio_id(%rip), %rsi
        call    puts
        mov     $MMIO_SCRATCH, %rbx
        movl    (%rbx), %eax
        mov     $8, %ecx
        call    put_hex
        call    newline
        lea     m_mmio(%rip), %rsi
        call    puts
        movabs  $0x1122334455667788, %rax
        mov     %rax, 8(%rbx)
        xor     %eax, %eax
        mov     8(%rbx), %rax
        mov     $16, %ecx
        call    put_hex
        call    newline

        /* cpuid: the hypervisor leaf, whose answer the VMM chose */
        lea     m_cpuid(%rip), %rsi
        call    puts
        mov     $0x40000000, %eax
        cpuid
        lea     sig(%rip), %rdi
        mov     %ebx, 0(%rdi)
        mov     %ecx, 4(%rdi)
        mov     %edx, 8(%rdi)
        movb    $0, 12(%rdi)
        mov     %rdi, %rsi
        call    puts
        call    newline

        /* rdtsc: the time-stamp counter moves forward */
        rdtsc
        shl     $32, %rdx
        or      %rax, %rdx
        mov     %rdx, %r9
        mov     $1000, %ecx
1:      loop    1b
        rdtsc
        shl     $32, %rdx
        or      %rax, %rdx
        lea     m_tsc_ok(%rip), %rsi
        cmp     %r9, %rdx
        ja      2f
        lea     m_tsc_bad(%rip), %rsi
2:      call    puts

        /* hlt with interrupts enabled: without an in-kernel irqchip the VMM
         * sees the exit and resumes us, since nothing could ever wake us */
        sti
        hlt
        cli
        lea     m_hlt(%rip), %rsi
        call    puts

        /* an unclaimed port: reads all ones */
        lea     m_unclaimed(%rip), %rsi
        call    puts
        mov     $0x2f8, %dx
        inb     %dx, %al
        mov     $2, %ecx
        call    put_hex
        call    newline

        EXIT_WITH 0

        .include "lib64.inc"

m_io8:      .asciz "out/in 8-bit  (uart scratch): "
m_io16:     .asciz "out/in 16-bit (pio scratch):  "
m_io32:     .asciz "out/in 32-bit (pio scratch):  "
m_rep:      .ascii "rep outsb: string I/O to the UART\n"
m_rep_end:
m_mmio_id:  .asciz "mmio read 32-bit (id):  "
m_mmio:     .asciz "mmio write+read 64-bit: "
m_cpuid:    .asciz "cpuid 0x40000000: "
m_tsc_ok:   .asciz "rdtsc: counter moves forward\n"
m_tsc_bad:  .asciz "rdtsc: counter did not move\n"
m_hlt:      .asciz "hlt: resumed by the VMM\n"
m_unclaimed: .asciz "in from unclaimed port 0x2f8: "
sig:        .skip 16
