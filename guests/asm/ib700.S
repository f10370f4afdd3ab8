/* ib700: pets the IB700 watchdog as QEMU's `-device ib700` models it (a
 * write to port 0x443 starts or refreshes it with the timeout its table
 * gives for the value written; a write to 0x441 stops it), and stops
 * petting on demand. A PVH ELF, entered in 32-bit protected mode.
 * The PVH command line sets "pets=N every=W hang=K t=V" (defaults 5,
 * 5000, none, 14): the guest spins W iterations between pets and prints
 * "ib700: pet i" after each; after N pets it stops the watchdog and exits
 * with status 0. With hang=K, or when a byte arrives on COM1, it stops
 * petting (after pet K, or at once) and spins forever without disarming
 * it: a hung guest, which the watchdog must catch. V is the value written
 * to 0x443: 14 means 2 s, 0 means 30 s (the table: 30 - 2V seconds). */
        .include "common.inc"
        .include "pvh_note.inc"
        .set IB700_STOP, 0x441
        .set IB700_START, 0x443
        .set COM1_LSR_DATA_READY, 1
        PVH_START
        mov     $k_pets, %edi
        mov     $5, %edx
        mov     $100000000, %ebx
        call    option
        mov     %eax, pets
        mov     $k_every, %edi
        mov     $5000, %edx
        mov     $100000000, %ebx
        call    option
        mov     %eax, every
        mov     $k_hang, %edi
        mov     $-1, %edx               /* absent: never */
        mov     $-1, %ebx
        call    option
        mov     %eax, hang
        mov     $k_t, %edi
        mov     $14, %edx
        mov     $15, %ebx
        call    option
        mov     %eax, tvalue

        mov     $m_start, %esi
        call    puts
        mov     tvalue, %eax
        call    put_dec
        call    newline

        xor     %ebp, %ebp              /* pets so far */
pet:    cmp     hang, %ebp
        je      hung
        mov     $COM1_LSR, %dx
        inb     %dx, %al
        test    $COM1_LSR_DATA_READY, %al
        jnz     asked
        cmp     pets, %ebp
        jae     done
        mov     every, %ecx
        test    %ecx, %ecx
        jz      2f
1:      dec     %ecx
        jnz     1b
2:      mov     tvalue, %eax
        mov     $IB700_START, %dx
        outb    %al, %dx
        inc     %ebp
        mov     $m_pet, %esi
        call    puts
        mov     %ebp, %eax
        call    put_dec
        call    newline
        jmp     pet

done:   mov     $IB700_STOP, %dx
        outb    %al, %dx
        mov     $m_done, %esi
        call    puts
        EXIT_WITH 0

asked:  mov     $COM1, %dx
        inb     %dx, %al                /* take the byte */
        mov     $m_asked, %esi
        call    puts
hung:   mov     $m_hung, %esi
        call    puts
3:      jmp     3b

        .include "lib32.inc"
k_pets:  .asciz "pets="
k_every: .asciz "every="
k_hang:  .asciz "hang="
k_t:     .asciz "t="
m_start: .asciz "ib700: petting the watchdog at 0x443 with value "
m_pet:   .asciz "ib700: pet "
m_done:  .asciz "ib700: stopped the watchdog, exiting\n"
m_asked: .asciz "ib700: a byte arrived on COM1\n"
m_hung:  .asciz "ib700: no more pets, spinning\n"
        .p2align 2
cmdline: .long 0
pets:    .long 0
every:   .long 0
hang:    .long 0
tvalue:  .long 0
