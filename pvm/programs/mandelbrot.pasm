; mandelbrot: escape-time iteration counts over a 1000x1000 grid, at most 100 iterations, as ../shared/bench-peers/mandelbrot
; expect: mandelbrot(1000, 100) = 30330814
; expect-status: 0
        .text
main:   li      r1, 0               ; zero, and the base for data
        li      r2, 100             ; max_iter
        li      r3, 0               ; total
        lif     r13, 2.0
        lif     r14, 4.0
        li      r4, 0               ; y
yloop:  itof    r0, r4              ; ci = y * 2.0 / w - 1.0
        fmul    r0, r0, r13
        ld64    r11, [r1+wf]
        fdiv    r0, r0, r11
        lif     r11, 1.0
        fsub    r6, r0, r11
        li      r5, 0               ; x
xloop:  itof    r0, r5              ; cr = x * 3.0 / w - 2.0
        lif     r11, 3.0
        fmul    r0, r0, r11
        ld64    r11, [r1+wf]
        fdiv    r0, r0, r11
        fsub    r7, r0, r13
        li      r8, 0               ; zr = 0.0
        li      r9, 0               ; zi = 0.0
        li      r10, 0              ; it
        bge     r10, r2, escaped
iter:   fmul    r11, r8, r8         ; zr2
        fmul    r12, r9, r9         ; zi2
        fadd    r0, r11, r12
        flt     r0, r14, r0         ; zr2 + zi2 > 4.0
        bne     r0, r1, escaped
        fmul    r0, r13, r8         ; zi = 2.0 * zr * zi + ci
        fmul    r0, r0, r9
        fadd    r9, r0, r6
        fsub    r0, r11, r12        ; zr = zr2 - zi2 + cr
        fadd    r8, r0, r7
        addi    r10, r10, 1
        blt     r10, r2, iter
escaped: add    r3, r3, r10
        addi    r5, r5, 1
        ld64    r0, [r1+w]
        blt     r5, r0, xloop
        addi    r4, r4, 1
        blt     r4, r0, yloop
        mov     r10, r3
        li      r1, s1
        li      r2, s1_end-s1
        sys     1
        li      r1, 0
        ld64    r1, [r1+w]
        sys     3
        li      r1, s2
        li      r2, s2_end-s2
        sys     1
        li      r1, 100
        sys     3
        li      r1, s3
        li      r2, s3_end-s3
        sys     1
        mov     r1, r10
        sys     3
        li      r1, 10
        sys     5
        li      r1, 0
        sys     0
        .data
        .align  8
w:      .quad   1000
wf:     .double 1000.0
s1:     .ascii  "mandelbrot("
s1_end:
s2:     .ascii  ", "
s2_end:
s3:     .ascii  ") = "
s3_end:
