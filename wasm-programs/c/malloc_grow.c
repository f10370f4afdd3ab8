/* malloc_grow: allocates, resizes and frees tens of MiB through malloc,
   realloc and free (the heap grows with memory.grow; nothing is given
   back), checking every block's contents; prints a checksum. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCKS 64
#define ROUNDS 4
#define UNIT (16 * 1024)

static unsigned char pattern(size_t block, size_t round, size_t offset) {
    return (unsigned char)(block * 31 + round * 7 + offset / UNIT);
}

static int fill(unsigned char *p, size_t size, size_t block, size_t round) {
    if (!p)
        return 0;
    for (size_t off = 0; off < size; off += UNIT)
        memset(p + off, pattern(block, round, off), size - off < UNIT ? size - off : UNIT);
    return 1;
}

/* Sums one byte in every 64, weighted by its position. */
static uint64_t sample(const unsigned char *p, size_t size) {
    uint64_t sum = 0;
    for (size_t off = 0; off < size; off += 64)
        sum += (uint64_t)p[off] * (off / 64 % 251 + 1);
    return sum;
}

int main(void) {
    unsigned char *blocks[BLOCKS];
    size_t sizes[BLOCKS];
    uint64_t checksum = 0;
    size_t peak = 0;
    for (size_t round = 0; round < ROUNDS; round++) {
        size_t live = 0;
        for (size_t i = 0; i < BLOCKS; i++) {
            sizes[i] = UNIT * (1 + (i * 7 + round * 3) % 31);
            blocks[i] = malloc(sizes[i]);
            if (!fill(blocks[i], sizes[i], i, round)) {
                printf("malloc of %zu bytes failed\n", sizes[i]);
                return 1;
            }
            live += sizes[i];
        }
        /* Double every other block: realloc must keep the old contents. */
        for (size_t i = 0; i < BLOCKS; i += 2) {
            unsigned char *grown = realloc(blocks[i], 2 * sizes[i]);
            if (!grown) {
                printf("realloc to %zu bytes failed\n", 2 * sizes[i]);
                return 1;
            }
            for (size_t off = 0; off < sizes[i]; off += UNIT)
                if (grown[off] != pattern(i, round, off)) {
                    printf("realloc lost the contents of block %zu\n", i);
                    return 1;
                }
            fill(grown + sizes[i], sizes[i], i + 1, round);
            live += sizes[i];
            blocks[i] = grown;
            sizes[i] *= 2;
        }
        peak = live > peak ? live : peak;
        for (size_t i = 0; i < BLOCKS; i++) {
            checksum += sample(blocks[i], sizes[i]);
            free(blocks[i]);
        }
    }
    /* One large block after all that freeing. */
    size_t big = 48u << 20;
    unsigned char *p = malloc(big);
    if (!fill(p, big, 5, 5)) {
        printf("malloc of %zu bytes failed\n", big);
        return 1;
    }
    checksum += sample(p, big);
    free(p);
#ifdef __wasm__
    int grew = __builtin_wasm_memory_size(0) * 65536 >= big;
#else
    int grew = 1; /* natively the heap is not one linear memory */
#endif
    printf("malloc_grow: %d rounds of %d blocks, peak %zu KiB live, then %zu MiB at once\n", ROUNDS, BLOCKS,
           peak / 1024, big >> 20);
    printf("memory grew past %zu MiB: %s\n", big >> 20, grew ? "yes" : "NO");
    printf("checksum %llu\n", (unsigned long long)checksum);
    return 0;
}
