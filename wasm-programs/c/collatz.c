/* wasm-programs: ../shared/bench-peers/collatz/collatz.c with long -> long long (long is 32 bits on wasm32), %ld -> %lld, atol -> atoll */
/* collatz: start below n with the longest Collatz chain (branches, div/mul). */
#include <stdio.h>
#include <stdlib.h>

static long long chain_length(long long x) {
    long long len = 1;
    while (x != 1) {
        if (x % 2 == 0)
            x = x / 2;
        else
            x = 3 * x + 1;
        len = len + 1;
    }
    return len;
}

int main(int argc, char **argv) {
    long long n = argc > 1 ? atoll(argv[1]) : 300000;
    long long best = 1, best_len = 1;
    for (long long start = 1; start < n; start++) {
        long long len = chain_length(start);
        if (len > best_len) {
            best = start;
            best_len = len;
        }
    }
    printf("collatz(%lld) = %lld len %lld\n", n, best, best_len);
    return 0;
}
