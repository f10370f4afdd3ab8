/* wasm-programs: ../shared/bench-peers/mandelbrot/mandelbrot.c with long -> long long (long is 32 bits on wasm32), %ld -> %lld, atol -> atoll */
/* mandelbrot: escape-time iteration counts over a w x w grid (double arithmetic). */
#include <stdio.h>
#include <stdlib.h>

static long long mandel(long long w, long long max_iter) {
    long long total = 0;
    for (long long y = 0; y < w; y++) {
        double ci = y * 2.0 / w - 1.0;
        for (long long x = 0; x < w; x++) {
            double cr = x * 3.0 / w - 2.0;
            double zr = 0.0, zi = 0.0;
            long long it = 0;
            while (it < max_iter) {
                double zr2 = zr * zr;
                double zi2 = zi * zi;
                if (zr2 + zi2 > 4.0) break;
                zi = 2.0 * zr * zi + ci;
                zr = zr2 - zi2 + cr;
                it = it + 1;
            }
            total = total + it;
        }
    }
    return total;
}

int main(int argc, char **argv) {
    long long w = argc > 1 ? atoll(argv[1]) : 1000;
    long long max_iter = argc > 2 ? atoll(argv[2]) : 100;
    printf("mandelbrot(%lld, %lld) = %lld\n", w, max_iter, mandel(w, max_iter));
    return 0;
}
