/* wasm-programs: ../shared/bench-peers/fib/fib.c with long -> long long (long is 32 bits on wasm32), %ld -> %lld, atol -> atoll */
/* fib: naive recursive Fibonacci (calls + integer arithmetic). */
#include <stdio.h>
#include <stdlib.h>

static long long fib(long long n) {
    if (n < 2) return n;
    return fib(n - 1) + fib(n - 2);
}

int main(int argc, char **argv) {
    long long n = argc > 1 ? atoll(argv[1]) : 37;
    printf("fib(%lld) = %lld\n", n, fib(n));
    return 0;
}
