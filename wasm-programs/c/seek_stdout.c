/* seek_stdout: fseek, ftell and lseek on standard output, which must be a
   pipe, and lseek on a descriptor that is not open: each fails cleanly
   (WASI fd_seek returns an error) and the program goes on. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

/* Runtimes refuse to seek a pipe with ESPIPE, or with ENOTCAPABLE when
   the descriptor lacks the seek right (WASI only). */
static const char *why(int err) {
    if (err == ESPIPE)
        return "not seekable";
#ifdef ENOTCAPABLE
    if (err == ENOTCAPABLE)
        return "not seekable";
#endif
    if (err == EBADF)
        return "bad descriptor";
    return "unexpected errno";
}

static void report(const char *what, long long result, int err) {
    if (result < 0)
        printf("%s = -1 (%s)\n", what, why(err));
    else
        printf("%s = %lld (it should have failed)\n", what, result);
}

int main(void) {
    printf("seeking standard output\n");
    fflush(stdout);
    errno = 0;
    int r = fseek(stdout, 0, SEEK_SET);
    report("fseek(stdout, 0, SEEK_SET)", r, errno);
    errno = 0;
    long pos = ftell(stdout);
    report("ftell(stdout)", pos, errno);
    errno = 0;
    off_t off = lseek(1, 0, SEEK_CUR);
    report("lseek(1, 0, SEEK_CUR)", (long long)off, errno);
    errno = 0;
    off = lseek(42, 0, SEEK_SET);
    report("lseek(42, 0, SEEK_SET)", (long long)off, errno);
    printf("still running after the failed seeks\n");
    return 0;
}
