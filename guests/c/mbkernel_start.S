/* The Multiboot header and entry of the C guest, as the OSDev "Bare Bones"
 * tutorial writes them: flags ask for page-aligned modules and memory
 * information; the entry sets up a stack and calls kernel_main(magic, info). */
        .set ALIGN,    1 << 0
        .set MEMINFO,  1 << 1
        .set FLAGS,    ALIGN | MEMINFO
        .set MAGIC,    0x1badb002
        .set CHECKSUM, -(MAGIC + FLAGS)

        .section .multiboot, "a"
        .align 4
        .long MAGIC
        .long FLAGS
        .long CHECKSUM

        .section .bss
        .align 16
stack_bottom:
        .skip 16384
stack_top:

        .section .text
        .global _start
        .type _start, @function
_start:
        mov     $stack_top, %esp
        push    %ebx            /* the information block */
        push    %eax            /* the boot loader's magic */
        call    kernel_main
1:      cli
        hlt
        jmp     1b
        .size _start, . - _start
