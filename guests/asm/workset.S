/* workset: rewrites a working set of memory and prints its progress, for
 * the live-migration tests and benchmark. A PVH ELF, entered in 32-bit
 * protected mode with paging off. The PVH command line sets the working
 * set and the passes, "mib=N passes=P" (defaults 1 and 64; N from 1 to
 * 2048 and below --mem minus 16, P from 1 to 1024).
 *
 * Pass p (1..P) writes, in every 4 KiB page i of the working set at
 * 16 MiB, the dword value(p, i) = p * 0x9e3779b1 ^ i * 0x85ebca77 at
 * offset 4 * (p mod 1024) of the page, so each pass dirties every page,
 * and prints "workset: pass p". At the end it reads back every dword it
 * wrote, counts those that differ from value(p, i), and prints a checksum
 * of them all: a page lost or mixed up on the way changes both. */
        .include "common.inc"
        .include "pvh_note.inc"
        .set BASE, 0x1000000            /* the working set starts at 16 MiB */
        .set K_PASS, 0x9e3779b1
        .set K_PAGE, 0x85ebca77
        PVH_START
        mov     $k_mib, %edi
        mov     $1, %edx
        mov     $2048, %ebx
        call    option
        mov     %eax, mib
        shl     $8, %eax                /* 256 pages per MiB */
        mov     %eax, npages
        mov     $k_passes, %edi
        mov     $64, %edx
        mov     $1024, %ebx
        call    option
        mov     %eax, passes

        mov     $m_start, %esi
        call    puts
        mov     mib, %eax
        call    put_dec
        mov     $m_mib, %esi
        call    puts
        mov     passes, %eax
        call    put_dec
        mov     $m_passes, %esi
        call    puts

        mov     $1, %ebp                /* p */
pass:   imul    $K_PASS, %ebp, %ebx
        mov     %ebp, %edi
        and     $1023, %edi
        lea     BASE(,%edi,4), %edi     /* page 0's dword of this pass */
        xor     %ecx, %ecx              /* i */
        mov     npages, %esi
1:      imul    $K_PAGE, %ecx, %eax
        xor     %ebx, %eax
        mov     %eax, (%edi)
        add     $4096, %edi
        inc     %ecx
        cmp     %esi, %ecx
        jb      1b
        mov     $m_pass, %esi
        call    puts
        mov     %ebp, %eax
        call    put_dec
        call    newline
        inc     %ebp
        cmp     passes, %ebp
        jbe     pass

        /* read back: esi = checksum, bad = dwords that differ */
        xor     %esi, %esi
        mov     $1, %ebp
check:  imul    $K_PASS, %ebp, %ebx
        mov     %ebp, %edi
        and     $1023, %edi
        lea     BASE(,%edi,4), %edi
        xor     %ecx, %ecx
2:      imul    $K_PAGE, %ecx, %eax
        xor     %ebx, %eax
        mov     (%edi), %edx
        cmp     %eax, %edx
        je      3f
        incl    bad
3:      rol     $5, %esi
        xor     %edx, %esi
        imul    $16777619, %esi, %esi   /* FNV's prime: every dword moves the sum */
        add     $4096, %edi
        inc     %ecx
        cmp     npages, %ecx
        jb      2b
        inc     %ebp
        cmp     passes, %ebp
        jbe     check

        mov     %esi, sum
        mov     $m_sum, %esi
        call    puts
        mov     sum, %eax
        call    put_hex32
        mov     $m_bad, %esi
        call    puts
        mov     bad, %eax
        call    put_dec
        mov     $m_end, %esi
        call    puts
        cmpl    $0, bad
        jne     4f
        EXIT_WITH 0
4:      EXIT_WITH 1

/* option: the decimal number after the key at edi ("mib=") on the command
 * line, clamped to 1..ebx; edx if the key is absent. Result in eax. */
option: mov     cmdline, %esi
1:      cmpb    $0, (%esi)
        je      5f
        xor     %ecx, %ecx
2:      movb    (%edi,%ecx), %al
        test    %al, %al
        jz      3f
        cmpb    (%esi,%ecx), %al
        jne     4f
        inc     %ecx
        jmp     2b
3:      add     %ecx, %esi
        xor     %eax, %eax
6:      movzbl  (%esi), %ecx
        sub     $'0', %ecx
        cmp     $9, %ecx
        ja      7f
        imul    $10, %eax, %eax
        add     %ecx, %eax
        inc     %esi
        jmp     6b
7:      test    %eax, %eax
        jnz     8f
        inc     %eax
8:      cmp     %ebx, %eax
        jbe     9f
        mov     %ebx, %eax
9:      ret
4:      inc     %esi
        jmp     1b
5:      mov     %edx, %eax
        ret

/* put_dec: print eax in decimal. Clobbers eax, ecx, edx. */
put_dec:
        push    %ebx
        mov     $10, %ebx
        xor     %ecx, %ecx
1:      xor     %edx, %edx
        div     %ebx
        push    %edx
        inc     %ecx
        test    %eax, %eax
        jnz     1b
2:      pop     %eax
        add     $'0', %al
        mov     $COM1, %dx
        outb    %al, %dx
        loop    2b
        pop     %ebx
        ret

/* put_hex32: print eax as 8 hex digits. Clobbers eax, ecx, edx. */
put_hex32:
        mov     $8, %ecx
1:      rol     $4, %eax
        push    %eax
        and     $0xf, %eax
        movb    hexdigits(%eax), %al
        mov     $COM1, %dx
        outb    %al, %dx
        pop     %eax
        loop    1b
        ret

newline:
        mov     $'\n', %al
        mov     $COM1, %dx
        outb    %al, %dx
        ret

        DEFINE_PUTS puts
hexdigits: .ascii "0123456789abcdef"
k_mib:    .asciz "mib="
k_passes: .asciz "passes="
m_start:  .asciz "workset: "
m_mib:    .asciz " MiB at 16 MiB, "
m_passes: .asciz " passes\n"
m_pass:   .asciz "workset: pass "
m_sum:    .asciz "workset: checksum "
m_bad:    .asciz ", "
m_end:    .asciz " dwords differ\n"
        .p2align 2
cmdline: .long 0
mib:     .long 0
npages:  .long 0
passes:  .long 0
sum:     .long 0
bad:     .long 0
