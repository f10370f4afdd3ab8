/* wasm-programs: ../shared/bench-peers/sieve/sieve.c with long -> long long (long is 32 bits on wasm32), %ld -> %lld, atol -> atoll */
/* sieve: sieve of Eratosthenes over 2..m, repeated reps times (array loads/stores). */
#include <stdio.h>
#include <stdlib.h>

static long long sieve(char *flags, long long m) {
    for (long long i = 1; i <= m; i++)
        flags[i] = 1;
    for (long long i = 2; i * i <= m; i++) {
        if (flags[i]) {
            for (long long j = i * i; j <= m; j += i)
                flags[j] = 0;
        }
    }
    long long count = 0;
    for (long long k = 2; k <= m; k++) {
        if (flags[k])
            count = count + 1;
    }
    return count;
}

int main(int argc, char **argv) {
    long long m = argc > 1 ? atoll(argv[1]) : 1000000;
    long long reps = argc > 2 ? atoll(argv[2]) : 30;
    long long total = 0;
    for (long long r = 0; r < reps; r++) {
        char *flags = malloc(m + 1);
        total = total + sieve(flags, m);
        free(flags);
    }
    printf("sieve(%lld) x %lld = %lld\n", m, reps, total);
    return 0;
}
