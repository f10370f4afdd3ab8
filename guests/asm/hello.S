/* hello: a PVH ELF. Entered in 32-bit protected mode, paging off, with EBX
 * holding the guest-physical address of struct hvm_start_info. Boots the
 * same way under our VMM and under qemu-system-x86_64 -M microvm. */
        .include "common.inc"
        .include "pvh_note.inc"
        .code32
        .globl _start
_start:
        mov     %ebx, %edi
        mov     $msg, %esi
        call    puts
        mov     $m_bad, %esi
        cmpl    $HVM_START_MAGIC, (%edi)
        jne     1f
        mov     $m_ok, %esi
1:      call    puts
        EXIT_WITH 0

        DEFINE_PUTS puts
msg:    .asciz  "Hello from a PVH guest!\n"
m_ok:   .asciz  "hvm_start_info: magic ok\n"
m_bad:  .asciz  "hvm_start_info: bad magic\n"
