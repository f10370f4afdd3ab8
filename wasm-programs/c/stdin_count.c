/* stdin_count: reads standard input to EOF in 100-byte read()s (WASI
   fd_read, many calls) and prints bytes, lines and an FNV-1a hash. */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    unsigned char buf[100];
    unsigned long long bytes = 0, lines = 0;
    uint32_t hash = 2166136261u;
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0) {
            perror("read");
            return 1;
        }
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            hash = (hash ^ buf[i]) * 16777619u;
            lines += buf[i] == '\n';
        }
        bytes += (unsigned long long)n;
    }
    printf("stdin: %llu bytes, %llu lines, fnv1a %08x\n", bytes, lines, (unsigned)hash);
    return 0;
}
