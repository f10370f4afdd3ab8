/* smp: several CPUs brought up the real way, as a PC kernel does.
 * Started in long mode at 1 MiB on the bootstrap processor (BSP). It finds
 * the CPUs in the MP table (Intel MP spec 1.4: the "_MP_" floating pointer
 * in the BIOS area, then the "PCMP" table's processor entries), copies a
 * real-mode trampoline to TRAMP (the SIPI vector TRAMP >> 12) and wakes
 * each application processor (AP) in turn with INIT-SIPI-SIPI through its
 * local APIC's ICR (xAPIC MMIO at 0xfee00000). The AP climbs from real to
 * protected to long mode, and prints its APIC id (and CPUID's) under a
 * spinlock. Then every CPU adds 1 to a shared counter ITERS times with
 * `lock xadd`, at the same time; the BSP checks the total exactly. Last,
 * the BSP and the first AP ping-pong fixed IPIs ROUNDS times through a
 * 64-bit IDT, each round trip acknowledged before the next ping (IPIs of
 * one vector coalesce). The APs are brought up one by one, so the output
 * depends only on the number of CPUs: asm/smp.out (1), smp-2.out, smp-4.out. */
        .include "common.inc"
        .set CODE64, 0x08               /* selectors of the VMM-built GDT at 0x500 */
        .set CODE32, 0x10
        .set DATA, 0x18
        .set TRAMP, 0x70000             /* below the boot stack page, free in every layout */
        .set SIPI_VECTOR, TRAMP >> 12
        .set AP_STACKS, 0x300000        /* AP n's stack ends at AP_STACKS + n * 4 KiB */
        .set MAX_CPUS, 16               /* CPUs this guest starts; more are left asleep */
        .set ITERS, 20000               /* lock xadd per CPU */
        .set ROUNDS, 1000               /* IPI round trips */
        .set SPIN_LIMIT, 2000000        /* polls before an AP counts as dead */
        .set IPI_RESULT, 0x6000         /* TSC ticks of the ping-pong, then ROUNDS: for `vmm bench` */
        .set LAPIC, 0xfee00000
        /* Registers of the local APIC, as offsets from r15, which holds
         * LAPIC on every CPU from cpu_init on (0xfee00000 is not a
         * sign-extended 32-bit address, so it needs a base register). */
        .set LAPIC_ID, 0x20
        .set LAPIC_EOI, 0xb0
        .set LAPIC_SVR, 0xf0
        .set LAPIC_ICR_LOW, 0x300
        .set LAPIC_ICR_HIGH, 0x310
        .set ICR_INIT, 0x4500           /* INIT, level assert */
        .set ICR_SIPI, 0x4600           /* start-up, level assert */
        .set VEC_PING, 0x40             /* BSP -> AP */
        .set VEC_PONG, 0x41             /* AP -> BSP */

        .code64
        .globl _start
_start:
        cli
        mov     $0xff, %al              /* mask the 8259s: only IPIs here */
        outb    %al, $0x21
        outb    %al, $0xa1
        call    setup_idt
        call    cpu_init
        call    find_cpus               /* rcx = CPUs to run, r10 = CPUs listed */
        mov     %rcx, cpus(%rip)
        mov     %r10, listed(%rip)
        lea     m_table(%rip), %rsi
        call    puts
        mov     listed(%rip), %rax
        call    put_dec
        lea     m_cpus(%rip), %rsi
        call    puts
        mov     cpus(%rip), %rax
        cmp     listed(%rip), %rax
        je      1f
        lea     m_first(%rip), %rsi     /* more than MAX_CPUS: the others sleep */
        call    puts
        mov     cpus(%rip), %rax
        call    put_dec
        call    newline
1:

        call    apic_id                 /* the BSP's own line */
        mov     %eax, bsp_id(%rip)
        lea     m_bsp(%rip), %rsi
        call    puts
        call    print_ids

        call    start_aps
        call    count_together
        call    ping_pong
        lea     m_done(%rip), %rsi
        call    puts
        EXIT_WITH 0

/* find_cpus: r10 = enabled processors in the MP table, rcx = those this
 * guest runs (at most MAX_CPUS), their APIC ids in `ids`; both 1 (this
 * CPU) when there is no table, as the MP spec says. */
find_cpus:
        mov     $0xf0000, %rsi
1:      cmpl    $0x5f504d5f, (%rsi)     /* "_MP_" */
        jne     2f
        push    %rsi
        mov     $16, %ecx               /* the floating pointer sums to 0 */
        call    sum_bytes
        pop     %rsi
        test    %al, %al
        jz      3f
2:      add     $16, %rsi
        cmp     $0x100000, %rsi
        jb      1b
        lea     m_notable(%rip), %rsi
        call    puts
        call    apic_id
        mov     %al, ids(%rip)
        mov     $1, %ecx
        mov     $1, %r10d
        ret
3:      mov     4(%rsi), %esi           /* the configuration table */
        cmpl    $0x504d4350, (%rsi)     /* "PCMP" */
        jne     bad_table
        push    %rsi
        movzwl  4(%rsi), %ecx
        call    sum_bytes
        pop     %rsi
        test    %al, %al
        jnz     bad_table
        movzwl  34(%rsi), %edx          /* entry count */
        lea     44(%rsi), %rdi
        xor     %ecx, %ecx
        xor     %r10d, %r10d
        lea     ids(%rip), %r8
4:      test    %edx, %edx
        jz      7f
        dec     %edx
        cmpb    $0, (%rdi)              /* processor entry: 20 bytes */
        jne     6f
        testb   $1, 3(%rdi)             /* enabled */
        jz      5f
        inc     %r10d
        cmp     $MAX_CPUS, %ecx
        jae     5f
        movb    1(%rdi), %al
        movb    %al, (%r8,%rcx)
        inc     %ecx
5:      add     $20, %rdi
        jmp     4b
6:      add     $8, %rdi                /* every other entry: 8 bytes */
        jmp     4b
7:      ret

/* sum_bytes: al = the sum of rcx bytes at rsi. Clobbers rcx, rsi, dl. */
sum_bytes:
        xor     %eax, %eax
1:      mov     (%rsi), %dl
        add     %dl, %al
        inc     %rsi
        dec     %rcx
        jnz     1b
        ret

bad_table:
        lea     m_badtable(%rip), %rsi
        call    puts
        EXIT_WITH 2

/* start_aps: wakes every AP of `ids` in turn, waiting until each checks in. */
start_aps:
        lea     tramp_start(%rip), %rsi /* the trampoline goes below 1 MiB */
        mov     $TRAMP, %edi
        mov     $(tramp_end - tramp_start), %ecx
1:      movb    (%rsi), %al
        movb    %al, (%rdi)
        inc     %rsi
        inc     %rdi
        dec     %ecx
        jnz     1b
        mov     %cr3, %rax
        mov     %eax, TRAMP + (tramp_cr3 - tramp_start)
        lea     ap_main(%rip), %rax
        mov     %rax, TRAMP + (tramp_entry - tramp_start)
        mov     $1, %r12                /* index into ids: 0 is the BSP */
2:      cmp     cpus(%rip), %r12
        jae     9f
        mov     %r12, %rax              /* this AP's stack */
        inc     %rax
        shl     $12, %rax
        add     $AP_STACKS, %rax
        mov     %rax, TRAMP + (tramp_stack - tramp_start)
        lea     ids(%rip), %rax
        movzbl  (%rax,%r12), %ebx       /* its APIC id */
        shl     $24, %ebx
        mov     %ebx, LAPIC_ICR_HIGH(%r15)
        movl    $ICR_INIT, LAPIC_ICR_LOW(%r15)
        mov     %ebx, LAPIC_ICR_HIGH(%r15)
        movl    $(ICR_SIPI | SIPI_VECTOR), LAPIC_ICR_LOW(%r15)
        mov     %ebx, LAPIC_ICR_HIGH(%r15)    /* the second SIPI, as the MP spec says */
        movl    $(ICR_SIPI | SIPI_VECTOR), LAPIC_ICR_LOW(%r15)
        mov     $SPIN_LIMIT, %ecx
3:      cmp     %r12, alive(%rip)       /* APs check in one by one */
        jae     4f
        pause
        dec     %ecx
        jnz     3b
        lea     m_dead(%rip), %rsi
        call    puts
        EXIT_WITH 3
4:      inc     %r12
        jmp     2b
9:      ret

/* count_together: every CPU adds 1 ITERS times, at once; the BSP checks. */
count_together:
        movb    $1, go(%rip)
        call    add_many
        mov     cpus(%rip), %rcx
        dec     %rcx
1:      cmp     %rcx, finished(%rip)    /* every AP is done */
        jb      1b
        lea     m_smp(%rip), %rsi
        call    puts
        mov     cpus(%rip), %rax
        call    put_dec
        lea     m_added(%rip), %rsi
        call    puts
        mov     $ITERS, %eax
        call    put_dec
        lea     m_counter(%rip), %rsi
        call    puts
        mov     counter(%rip), %rax
        call    put_dec
        mov     cpus(%rip), %rax
        imul    $ITERS, %rax
        cmp     counter(%rip), %rax
        jne     2f
        lea     m_exact(%rip), %rsi
        call    puts
        ret
2:      lea     m_lost(%rip), %rsi
        call    puts
        EXIT_WITH 4

add_many:
        mov     $ITERS, %ecx
1:      mov     $1, %eax
        lock xadd %rax, counter(%rip)
        dec     %ecx
        jnz     1b
        ret

/* ping_pong: ROUNDS fixed IPIs to the first AP, each answered before the next. */
ping_pong:
        cmpq    $2, cpus(%rip)
        jae     1f
        lea     m_alone(%rip), %rsi
        call    puts
        ret
1:      movzbl  ids+1(%rip), %ebx
        shl     $24, %ebx
        xor     %r13, %r13              /* round trips done */
        rdtsc
        shl     $32, %rdx
        or      %rax, %rdx
        mov     %rdx, %r14              /* TSC at the first ping */
2:      inc     %r13
        mov     %ebx, LAPIC_ICR_HIGH(%r15)
        movl    $VEC_PING, LAPIC_ICR_LOW(%r15)
3:      cli
        cmp     %r13, pongs(%rip)
        jae     4f
        sti                             /* sti; hlt: no wake-up is lost in between */
        hlt
        jmp     3b
4:      cmp     $ROUNDS, %r13
        jb      2b
        rdtsc
        shl     $32, %rdx
        or      %rax, %rdx
        sub     %r14, %rdx
        mov     %rdx, IPI_RESULT
        movq    $ROUNDS, IPI_RESULT + 8
        lea     m_smp(%rip), %rsi
        call    puts
        mov     %r13, %rax
        call    put_dec
        lea     m_rounds(%rip), %rsi
        call    puts
        mov     bsp_id(%rip), %eax
        call    put_dec
        lea     m_and(%rip), %rsi
        call    puts
        movzbl  ids+1(%rip), %eax
        call    put_dec
        call    newline
        ret

/* ap_main: an AP, in long mode on its own stack. */
ap_main:
        call    cpu_init
        call    lock_serial
        lea     m_ap(%rip), %rsi
        call    puts
        call    print_ids
        movb    $0, serial_lock(%rip)
        lock incq alive(%rip)
1:      pause                           /* until the BSP says go */
        cmpb    $0, go(%rip)
        je      1b
        call    add_many
        lock incq finished(%rip)
2:      sti                             /* now only IPIs wake it */
        hlt
        jmp     2b

/* cpu_init: this CPU's IDT and its local APIC software-enabled. */
cpu_init:
        mov     $LAPIC, %r15d
        lidt    idt_desc(%rip)
        movl    $0x1ff, LAPIC_SVR(%r15)       /* enabled, spurious vector 0xff */
        ret

/* apic_id: eax = this CPU's local APIC id. */
apic_id:
        mov     LAPIC_ID(%r15), %eax
        shr     $24, %eax
        ret

/* print_ids: "APIC id N, CPUID says M\n" for this CPU. Clobbers rax-rdx, rsi, r8-r9. */
print_ids:
        lea     m_id(%rip), %rsi
        call    puts
        call    apic_id
        call    put_dec
        lea     m_cpuid(%rip), %rsi
        call    puts
        mov     $1, %eax
        cpuid
        mov     %ebx, %eax
        shr     $24, %eax
        call    put_dec
        call    newline
        ret

lock_serial:
1:      lock btsq $0, serial_lock(%rip)
        jnc     2f
        pause
        jmp     1b
2:      ret

/* put_dec: print rax in decimal. Clobbers rax, rcx, rdx, r9. */
put_dec:
        mov     $10, %r9
        xor     %ecx, %ecx
1:      xor     %edx, %edx
        div     %r9
        push    %rdx
        inc     %ecx
        test    %rax, %rax
        jnz     1b
2:      pop     %rax
        add     $'0', %al
        mov     $COM1, %dx
        outb    %al, %dx
        dec     %ecx
        jnz     2b
        ret

/* setup_idt: 256 gates to `fault`, except ping, pong and the spurious vector. */
setup_idt:
        lea     idt(%rip), %rdi
        xor     %ecx, %ecx
1:      lea     fault(%rip), %rax
        cmp     $VEC_PING, %ecx
        jne     2f
        lea     on_ping(%rip), %rax
2:      cmp     $VEC_PONG, %ecx
        jne     3f
        lea     on_pong(%rip), %rax
3:      cmp     $0xff, %ecx
        jne     4f
        lea     on_spurious(%rip), %rax
4:      call    set_gate
        add     $16, %rdi
        inc     %ecx
        cmp     $256, %ecx
        jne     1b
        ret

        .include "idt64.inc"

/* on_ping: on the AP. Acknowledge, then answer the BSP. */
on_ping:
        push    %rax
        movl    $0, LAPIC_EOI(%r15)
        mov     bsp_id(%rip), %eax
        shl     $24, %eax
        mov     %eax, LAPIC_ICR_HIGH(%r15)
        movl    $VEC_PONG, LAPIC_ICR_LOW(%r15)
        pop     %rax
        iretq

/* on_pong: on the BSP. One more round trip. */
on_pong:
        lock incq pongs(%rip)
        movl    $0, LAPIC_EOI(%r15)
        iretq

on_spurious:
        iretq

fault:  lea     m_fault(%rip), %rsi
        call    puts
        EXIT_WITH 5

/* The trampoline, copied to TRAMP: the SIPI starts an AP here in real
 * mode at CS = TRAMP >> 4, IP = 0. Addresses inside it are offsets from
 * tramp_start, plus TRAMP once out of real mode. */
        .code16
tramp_start:
        cli
        mov     %cs, %ax
        mov     %ax, %ds
        lgdtl   tramp_gdtr - tramp_start
        mov     %cr0, %eax
        or      $1, %eax                /* PE */
        mov     %eax, %cr0
        ljmpl   $CODE32, $(TRAMP + tramp32 - tramp_start)
        .code32
tramp32:
        mov     $DATA, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     %cr4, %eax
        or      $0x20, %eax             /* PAE */
        mov     %eax, %cr4
        mov     TRAMP + (tramp_cr3 - tramp_start), %eax
        mov     %eax, %cr3              /* the BSP's identity tables */
        mov     $0xc0000080, %ecx       /* EFER.LME */
        rdmsr
        or      $0x100, %eax
        wrmsr
        mov     %cr0, %eax
        or      $0x80000000, %eax       /* PG: long mode */
        mov     %eax, %cr0
        ljmp    $CODE64, $(TRAMP + tramp64 - tramp_start)
        .code64
tramp64:
        mov     TRAMP + (tramp_stack - tramp_start), %rsp
        jmp     *TRAMP + (tramp_entry - tramp_start)
        .p2align 3
tramp_gdtr:  .word 4 * 8 - 1            /* the VMM's GDT */
             .long 0x500
             .p2align 3
tramp_cr3:   .quad 0
tramp_stack: .quad 0
tramp_entry: .quad 0
tramp_end:

        .include "lib64.inc"

m_smp:      .asciz "smp: "
m_table:    .asciz "smp: the MP table lists "
m_cpus:     .asciz " CPU(s)\n"
m_first:    .asciz "smp: this guest runs the first "
m_notable:  .asciz "smp: no MP table: one CPU\n"
m_badtable: .asciz "smp: the MP table is corrupt\n"
m_bsp:      .asciz "smp: BSP, "
m_ap:       .asciz "smp: AP up in long mode, "
m_id:       .asciz "APIC id "
m_cpuid:    .asciz ", CPUID says "
m_dead:     .asciz "smp: an AP did not start after INIT-SIPI-SIPI\n"
m_added:    .asciz " CPU(s) added 1 "
m_counter:  .asciz " times each with lock xadd: counter "
m_exact:    .asciz ", exact\n"
m_lost:     .asciz ", wrong: increments were lost\n"
m_alone:    .asciz "smp: one CPU: no IPI ping-pong\n"
m_rounds:   .asciz " IPI round trips between APIC ids "
m_and:      .asciz " and "
m_done:     .asciz "smp: done\n"
m_fault:    .asciz "smp: unexpected exception or interrupt\n"

        .p2align 3
cpus:        .quad 0                    /* CPUs run */
listed:      .quad 0                    /* CPUs in the MP table */
bsp_id:      .quad 0
alive:       .quad 0                    /* APs checked in */
finished:    .quad 0                    /* APs done adding */
counter:     .quad 0
pongs:       .quad 0
serial_lock: .quad 0
go:          .byte 0
ids:         .skip MAX_CPUS
        .p2align 4
idt:         .skip 256 * 16
idt_desc:    .word 256 * 16 - 1
             .quad idt
