/* wasm-programs: ../shared/bench-peers/loop/loop.c with long -> long long (long is 32 bits on wasm32), %ld -> %lld, atol -> atoll */
/* loop: tight integer loop with a branch: s += (i*i) % 7 when < 4, else s -= 1. */
#include <stdio.h>
#include <stdlib.h>

static long long run(long long n) {
    long long s = 0;
    for (long long i = 0; i < n; i++) {
        long long r = (i * i) % 7;
        if (r < 4)
            s = s + r;
        else
            s = s - 1;
    }
    return s;
}

int main(int argc, char **argv) {
    long long n = argc > 1 ? atoll(argv[1]) : 90000000;
    printf("loop(%lld) = %lld\n", n, run(n));
    return 0;
}
