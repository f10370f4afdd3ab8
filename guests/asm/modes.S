/* modes: starts in real mode at 0x7c00 and climbs by itself to protected
 * mode and then long mode, printing in each: lgdt, CR0.PE, a far jump,
 * PAE page tables, EFER.LME, CR0.PG, a far jump to a 64-bit segment. */
        .include "common.inc"
        .set PML4, 0x20000      /* scratch page tables, guest-owned RAM */
        .set PDPT, 0x21000
        .set PD,   0x22000

        .code16
        .globl _start
_start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %ss
        mov     $0x7c00, %sp
        mov     $msg16, %si
        call    puts16

        lgdt    gdt_desc
        mov     %cr0, %eax
        or      $1, %eax                /* CR0.PE */
        mov     %eax, %cr0
        ljmpl   $0x10, $pm32

        DEFINE_PUTS puts16

        .code32
pm32:   mov     $0x18, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $0x7c00, %esp
        mov     $msg32, %esi
        call    puts32

        /* identity-map the first 2 MiB with one large page */
        mov     $PML4, %edi
        xor     %eax, %eax
        mov     $(3 * 4096 / 4), %ecx
        rep stosl
        movl    $(PDPT | 3), PML4
        movl    $(PD | 3), PDPT
        movl    $0x83, PD               /* present, writable, 2 MiB page */
        mov     $PML4, %eax
        mov     %eax, %cr3
        mov     %cr4, %eax
        or      $(1 << 5), %eax         /* CR4.PAE */
        mov     %eax, %cr4
        mov     $0xc0000080, %ecx       /* IA32_EFER */
        rdmsr
        or      $(1 << 8), %eax         /* EFER.LME */
        wrmsr
        mov     %cr0, %eax
        or      $(1 << 31), %eax        /* CR0.PG: long mode becomes active */
        mov     %eax, %cr0
        ljmp    $0x08, $lm64

        DEFINE_PUTS puts32

        .code64
lm64:   lea     msg64(%rip), %rsi
        call    puts64
        EXIT_WITH 0

        DEFINE_PUTS puts64

        .p2align 3
gdt:    .quad   0                       /* null */
        .quad   0x00af9b000000ffff      /* 0x08: 64-bit code */
        .quad   0x00cf9b000000ffff      /* 0x10: 32-bit code */
        .quad   0x00cf93000000ffff      /* 0x18: flat data */
gdt_end:
gdt_desc:
        .word   gdt_end - gdt - 1
        .long   gdt

msg16:  .asciz  "real mode: 16-bit, segments and offsets\n"
msg32:  .asciz  "protected mode: 32-bit, flat segments\n"
msg64:  .asciz  "long mode: 64-bit, paging on\n"
