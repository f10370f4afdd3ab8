/* wasm-programs: ../shared/bench-peers/matmul/matmul.c with long -> long long (long is 32 bits on wasm32), %ld -> %lld, atol -> atoll */
/* matmul: c = a * b for n x n integer matrices (nested loops, array indexing). */
#include <stdio.h>
#include <stdlib.h>

static long long **make(long long n, long long seed) {
    long long **m = malloc(n * sizeof *m);
    for (long long i = 0; i < n; i++) {
        long long *row = malloc(n * sizeof *row);
        for (long long j = 0; j < n; j++)
            row[j] = (i * j + seed * i + j) % 100;
        m[i] = row;
    }
    return m;
}

static long long **matmul(long long **a, long long **b, long long n) {
    long long **c = malloc(n * sizeof *c);
    for (long long i = 0; i < n; i++) {
        long long *ai = a[i];
        long long *ci = malloc(n * sizeof *ci);
        for (long long j = 0; j < n; j++) {
            long long s = 0;
            for (long long k = 0; k < n; k++)
                s = s + ai[k] * b[k][j];
            ci[j] = s;
        }
        c[i] = ci;
    }
    return c;
}

int main(int argc, char **argv) {
    long long n = argc > 1 ? atoll(argv[1]) : 400;
    long long **a = make(n, 3);
    long long **b = make(n, 7);
    long long **c = matmul(a, b, n);
    long long sum = 0;
    for (long long i = 0; i < n; i++)
        for (long long j = 0; j < n; j++)
            sum = sum + c[i][j] * ((i + j) % 7 + 1);
    printf("matmul(%lld) = %lld\n", n, sum);
    return 0;
}
