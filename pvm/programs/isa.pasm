; isa: every instruction once, each result printed
; expect: mov 7 li -5 lih 4294967303
; expect: add 10 sub 4 mul 21 divs -3 divu 2 rems -1 remu 1
; expect: and 3 or 7 xor 4 shl 56 shr 1 sar -2
; expect: seq 0 sne 1 slt 1 sltu 0 sle 1 sleu 0
; expect: addi 17 subi -3 muli -21 divsi -3 divui 3 remsi 1 remui 1
; expect: andi 2 ori 15 xori 5 shli 28 shri 3 sari -4
; expect: seqi 1 snei 0 slti 1 sltui 1 slei 1 sleui 0
; expect: fadd 4 fsub -1 fmul 3.75 fdiv 0.6 feq 0 flt 1 fle 1
; expect: fsqrt 1.5 fneg -2.5 itof -3 ftoi -2
; expect: ld8u 255 ld8s -1 ld16u 65535 ld16s -1 ld32u 4294967295 ld32s -1 ld64 -1
; expect: st8 255 st16 65535 st32 4294967295 st64 -1
; expect: push/pop 42 jmp ok branches 111111 jr ok call ok callr ok nop ok
; expect-status: 0
        .text
main:   li      r14, 0
        li      r1, 7
        mov     r2, r1
        li      r3, t_mov
        call    show
        li      r2, -5
        li      r3, t_li
        call    show
        li      r2, 7
        lih     r2, 1               ; 1 << 32 | 7
        li      r3, t_lih
        call    show
        call    nl
        li      r4, 7               ; register forms: r4 = 7, r5 = 3, r6 = -7
        li      r5, 3
        li      r6, -7
        add     r2, r4, r5
        li      r3, t_add
        call    show
        sub     r2, r4, r5
        li      r3, t_sub
        call    show
        mul     r2, r4, r5
        li      r3, t_mul
        call    show
        divs    r2, r6, r4          ; -7 / 7 ... no: -7 / 2 below
        li      r7, 2
        divs    r2, r6, r7          ; -7 / 2 = -3
        li      r3, t_divs
        call    show
        divu    r2, r4, r5          ; 7 / 3 = 2
        li      r3, t_divu
        call    show
        rems    r2, r6, r7          ; -7 % 2 = -1
        li      r3, t_rems
        call    show
        remu    r2, r4, r5          ; 7 % 3 = 1
        li      r3, t_remu
        call    show
        call    nl
        and     r2, r4, r5
        li      r3, t_and
        call    show
        or      r2, r4, r5
        li      r3, t_or
        call    show
        xor     r2, r4, r5
        li      r3, t_xor
        call    show
        shl     r2, r4, r5          ; 7 << 3
        li      r3, t_shl
        call    show
        li      r8, 2
        shr     r2, r4, r8          ; 7 >> 2
        li      r3, t_shr
        call    show
        sar     r2, r6, r8          ; -7 >> 2 = -2
        li      r3, t_sar
        call    show
        call    nl
        seq     r2, r4, r5
        li      r3, t_seq
        call    show
        sne     r2, r4, r5
        li      r3, t_sne
        call    show
        slt     r2, r6, r4          ; -7 < 7
        li      r3, t_slt
        call    show
        sltu    r2, r6, r4          ; huge < 7: no
        li      r3, t_sltu
        call    show
        sle     r2, r5, r4
        li      r3, t_sle
        call    show
        sleu    r2, r6, r5
        li      r3, t_sleu
        call    show
        call    nl
        addi    r2, r4, 10
        li      r3, t_addi
        call    show
        subi    r2, r4, 10
        li      r3, t_subi
        call    show
        muli    r2, r4, -3
        li      r3, t_muli
        call    show
        divsi   r2, r6, 2
        li      r3, t_divsi
        call    show
        divui   r2, r4, 2
        li      r3, t_divui
        call    show
        remsi   r2, r4, 3
        li      r3, t_remsi
        call    show
        remui   r2, r4, 2
        li      r3, t_remui
        call    show
        call    nl
        andi    r2, r4, 10          ; 0b0111 & 0b1010
        li      r3, t_andi
        call    show
        ori     r2, r4, 8
        li      r3, t_ori
        call    show
        xori    r2, r4, 2
        li      r3, t_xori
        call    show
        shli    r2, r4, 2
        li      r3, t_shli
        call    show
        shri    r2, r4, 1
        li      r3, t_shri
        call    show
        sari    r2, r6, 1           ; -7 >> 1 = -4
        li      r3, t_sari
        call    show
        call    nl
        seqi    r2, r4, 7
        li      r3, t_seqi
        call    show
        snei    r2, r4, 7
        li      r3, t_snei
        call    show
        slti    r2, r6, 0
        li      r3, t_slti
        call    show
        sltui   r2, r5, 4
        li      r3, t_sltui
        call    show
        slei    r2, r4, 7
        li      r3, t_slei
        call    show
        sleui   r2, r6, 7
        li      r3, t_sleui
        call    show
        call    nl
        lif     r4, 2.5             ; floats: 2.5 and 1.5
        lif     r5, 1.5
        fadd    r2, r4, r5
        li      r3, t_fadd
        call    showf
        fsub    r2, r5, r4
        li      r3, t_fsub
        call    showf
        fmul    r2, r4, r5
        li      r3, t_fmul
        call    showf
        fdiv    r2, r5, r4
        li      r3, t_fdiv
        call    showf
        feq     r2, r4, r5
        li      r3, t_feq
        call    show
        flt     r2, r5, r4
        li      r3, t_flt
        call    show
        fle     r2, r4, r4
        li      r3, t_fle
        call    show
        call    nl
        lif     r7, 2.25
        fsqrt   r2, r7
        li      r3, t_fsqrt
        call    showf
        fneg    r2, r4
        li      r3, t_fneg
        call    showf
        li      r7, -3
        itof    r2, r7
        li      r3, t_itof
        call    showf
        lif     r7, -2.75
        ftoi    r2, r7
        li      r3, t_ftoi
        call    show
        call    nl
        li      r9, cell            ; memory: cell holds all ones
        ld8u    r2, [r9]
        li      r3, t_ld8u
        call    show
        ld8s    r2, [r9]
        li      r3, t_ld8s
        call    show
        ld16u   r2, [r9+2]
        li      r3, t_ld16u
        call    show
        ld16s   r2, [r9+2]
        li      r3, t_ld16s
        call    show
        ld32u   r2, [r9+4]
        li      r3, t_ld32u
        call    show
        ld32s   r2, [r9]
        li      r3, t_ld32s
        call    show
        ld64    r2, [r9]
        li      r3, t_ld64
        call    show
        call    nl
        li      r10, -1
        li      r9, scratch
        st8     r10, [r9]
        ld64    r2, [r9]
        li      r3, t_st8
        call    show
        st16    r10, [r9]
        ld64    r2, [r9]
        li      r3, t_st16
        call    show
        st32    r10, [r9]
        ld64    r2, [r9]
        li      r3, t_st32
        call    show
        st64    r10, [r9]
        ld64    r2, [r9]
        li      r3, t_st64
        call    show
        call    nl
        li      r10, 42             ; control
        push    r10
        pop     r2
        li      r3, t_push
        call    show
        jmp     j_ok
        li      r1, 1               ; skipped
        sys     0
j_ok:   li      r3, t_jmp
        call    word
        li      r2, 0               ; each taken branch adds a digit 1
        li      r4, 1
        li      r5, 2
        li      r6, -1
        beq     r4, r4, b1
        jmp     bad
b1:     muli    r2, r2, 10
        addi    r2, r2, 1
        bne     r4, r5, b2
        jmp     bad
b2:     muli    r2, r2, 10
        addi    r2, r2, 1
        blt     r6, r4, b3
        jmp     bad
b3:     muli    r2, r2, 10
        addi    r2, r2, 1
        bge     r5, r4, b4
        jmp     bad
b4:     muli    r2, r2, 10
        addi    r2, r2, 1
        bltu    r4, r6, b5
        jmp     bad
b5:     muli    r2, r2, 10
        addi    r2, r2, 1
        bgeu    r6, r5, b6
        jmp     bad
b6:     muli    r2, r2, 10
        addi    r2, r2, 1
        beq     r4, r5, bad         ; not taken
        li      r3, t_br
        call    show
        li      r7, jr_ok
        jr      r7
        jmp     bad
jr_ok:  li      r3, t_jr
        call    word
        call    noop
        li      r3, t_call
        call    word
        li      r7, noop
        callr   r7
        li      r3, t_callr
        call    word
        nop
        li      r3, t_nop
        call    word
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0
bad:    li      r1, 1
        sys     0

noop:   ret

; show: print the NUL-terminated name at r3, a space, r2 as an integer, a space (r14 = 0 before the first)
show:   call    name
        mov     r1, r2
        sys     3
        ret
; showf: the same with r2 as a float
showf:  call    name
        mov     r1, r2
        sys     4
        ret
; word: print the name at r3 and " ok"
word:   call    name
        li      r1, 'o'
        sys     5
        li      r1, 'k'
        sys     5
        ret
; name: separator (unless first on the line), then the string at r3, then a space
name:   li      r1, 0
        beq     r14, r1, nm_first
        li      r1, ' '
        sys     5
nm_first: li    r14, 1
nm_loop: ld8u   r1, [r3]
        li      r0, 0
        beq     r1, r0, nm_end
        sys     5
        addi    r3, r3, 1
        jmp     nm_loop
nm_end: li      r1, ' '
        sys     5
        ret
nl:     li      r1, 10
        sys     5
        li      r14, 0
        ret

        .data
        .align  8
cell:   .quad   -1
scratch: .quad  0
t_mov:  .asciz  "mov"
t_li:   .asciz  "li"
t_lih:  .asciz  "lih"
t_add:  .asciz  "add"
t_sub:  .asciz  "sub"
t_mul:  .asciz  "mul"
t_divs: .asciz  "divs"
t_divu: .asciz  "divu"
t_rems: .asciz  "rems"
t_remu: .asciz  "remu"
t_and:  .asciz  "and"
t_or:   .asciz  "or"
t_xor:  .asciz  "xor"
t_shl:  .asciz  "shl"
t_shr:  .asciz  "shr"
t_sar:  .asciz  "sar"
t_seq:  .asciz  "seq"
t_sne:  .asciz  "sne"
t_slt:  .asciz  "slt"
t_sltu: .asciz  "sltu"
t_sle:  .asciz  "sle"
t_sleu: .asciz  "sleu"
t_addi: .asciz  "addi"
t_subi: .asciz  "subi"
t_muli: .asciz  "muli"
t_divsi: .asciz "divsi"
t_divui: .asciz "divui"
t_remsi: .asciz "remsi"
t_remui: .asciz "remui"
t_andi: .asciz  "andi"
t_ori:  .asciz  "ori"
t_xori: .asciz  "xori"
t_shli: .asciz  "shli"
t_shri: .asciz  "shri"
t_sari: .asciz  "sari"
t_seqi: .asciz  "seqi"
t_snei: .asciz  "snei"
t_slti: .asciz  "slti"
t_sltui: .asciz "sltui"
t_slei: .asciz  "slei"
t_sleui: .asciz "sleui"
t_fadd: .asciz  "fadd"
t_fsub: .asciz  "fsub"
t_fmul: .asciz  "fmul"
t_fdiv: .asciz  "fdiv"
t_feq:  .asciz  "feq"
t_flt:  .asciz  "flt"
t_fle:  .asciz  "fle"
t_fsqrt: .asciz "fsqrt"
t_fneg: .asciz  "fneg"
t_itof: .asciz  "itof"
t_ftoi: .asciz  "ftoi"
t_ld8u: .asciz  "ld8u"
t_ld8s: .asciz  "ld8s"
t_ld16u: .asciz "ld16u"
t_ld16s: .asciz "ld16s"
t_ld32u: .asciz "ld32u"
t_ld32s: .asciz "ld32s"
t_ld64: .asciz  "ld64"
t_st8:  .asciz  "st8"
t_st16: .asciz  "st16"
t_st32: .asciz  "st32"
t_st64: .asciz  "st64"
t_push: .asciz  "push/pop"
t_jmp:  .asciz  "jmp"
t_br:   .asciz  "branches"
t_jr:   .asciz  "jr"
t_call: .asciz  "call"
t_callr: .asciz "callr"
t_nop:  .asciz  "nop"
