/* hello: greets, prints its arguments and its environment, looks two
   variables up, and exits with the status that `--exit N` asks for
   (WASI args_get, environ_get, fd_write, proc_exit). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* Runtimes name the program differently in argv[0] (a path, with or
   without .wasm): print only its last component, without .wasm. */
static void print_program_name(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len > 5 && strcmp(base + len - 5, ".wasm") == 0)
        len -= 5;
    printf("argv[0] = %.*s\n", (int)len, base);
}

static void print_lookup(const char *name) {
    const char *value = getenv(name);
    printf("getenv(\"%s\") = %s\n", name, value ? value : "(unset)");
}

int main(int argc, char **argv) {
    printf("Hello from WebAssembly!\n");
    printf("argc = %d\n", argc);
    if (argc > 0)
        print_program_name(argv[0]);
    for (int i = 1; i < argc; i++)
        printf("argv[%d] = %s\n", i, argv[i]);
    int count = 0;
    for (char **e = environ; *e; e++)
        printf("environ[%d] = %s\n", count++, *e);
    print_lookup("HELLO_NAME");
    print_lookup("HELLO_MISSING");
    int status = 0;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--exit") == 0)
            status = atoi(argv[i + 1]);
    printf("exiting with status %d\n", status);
    /* exit(), not return: stdout is flushed by the atexit path. */
    exit(status);
}
