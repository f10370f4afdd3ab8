/* count: prints a numbered sequence, one line per number, for the
 * checkpoint, rollback and output-commit tests and the checkpoint-overhead
 * benchmark. A PVH ELF, entered in 32-bit protected mode with paging off.
 * The PVH command line sets "n=N work=W pages=P touch=T" (defaults 20,
 * 1000, 0, 0): first the guest writes one dword into each of T pages at
 * 32 MiB, once (memory written and then left alone); then before line i
 * (1..N) it spins W iterations and writes one dword into each of P pages
 * at 16 MiB (value i * 0x9e3779b1 ^ page * 0x85ebca77, at offset
 * 4 * (i mod 1024) of the page), so each line costs guest time and dirties
 * P pages. Every line is "count i", in order: after any number of
 * rollbacks the output must still be each number exactly once. */
        .include "common.inc"
        .include "pvh_note.inc"
        .set BASE, 0x1000000            /* the pages written start at 16 MiB */
        .set TOUCHED, 0x2000000         /* the pages written once start at 32 MiB */
        .set K_LINE, 0x9e3779b1
        .set K_PAGE, 0x85ebca77
        PVH_START
        mov     $k_n, %edi
        mov     $20, %edx
        mov     $10000000, %ebx
        call    option
        mov     %eax, n
        mov     $k_work, %edi
        mov     $1000, %edx
        mov     $100000000, %ebx
        call    option
        mov     %eax, work
        mov     $k_pages, %edi
        xor     %edx, %edx
        mov     $4096, %ebx             /* 16 MiB of pages: --mem 32 holds them */
        call    option
        mov     %eax, pages
        mov     $k_touch, %edi
        xor     %edx, %edx
        mov     $262144, %ebx           /* 1 GiB of pages: --mem 1056 holds them */
        call    option
        mov     %eax, touch

        mov     $m_start, %esi
        call    puts
        mov     n, %eax
        call    put_dec
        mov     $m_work, %esi
        call    puts
        mov     work, %eax
        call    put_dec
        mov     $m_pages, %esi
        call    puts
        mov     pages, %eax
        call    put_dec
        call    newline

        mov     $TOUCHED, %edi
        mov     touch, %ecx
        jmp     6f
5:      movl    $1, (%edi)
        add     $4096, %edi
        dec     %ecx
6:      test    %ecx, %ecx
        jnz     5b

        mov     $1, %ebp                /* i */
line:   mov     work, %ecx
        test    %ecx, %ecx
        jz      2f
1:      dec     %ecx
        jnz     1b
2:      imul    $K_LINE, %ebp, %ebx
        mov     %ebp, %edi
        and     $1023, %edi
        lea     BASE(,%edi,4), %edi
        xor     %ecx, %ecx              /* page */
        jmp     4f
3:      imul    $K_PAGE, %ecx, %eax
        xor     %ebx, %eax
        mov     %eax, (%edi)
        add     $4096, %edi
        inc     %ecx
4:      cmp     pages, %ecx
        jb      3b
        mov     $m_line, %esi
        call    puts
        mov     %ebp, %eax
        call    put_dec
        call    newline
        inc     %ebp
        cmp     n, %ebp
        jbe     line
        mov     $m_done, %esi
        call    puts
        EXIT_WITH 0

        .include "lib32.inc"
k_n:     .asciz "n="
k_work:  .asciz "work="
k_pages: .asciz "pages="
k_touch: .asciz "touch="
m_start: .asciz "count: "
m_work:  .asciz " lines, work "
m_pages: .asciz ", pages "
m_line:  .asciz "count "
m_done:  .asciz "count: done\n"
        .p2align 2
cmdline: .long 0
n:       .long 0
work:    .long 0
pages:   .long 0
touch:   .long 0
