"""Runs a WASI (preview1) command module under wasmtime, through the
`wasmtime` package from PyPI (pip install wasmtime), as a whole process:
its exit status is the module's.

    python3 wasmtime-wasi.py [--env K=V]... FILE.wasm [ARG]...

The module sees FILE.wasm as argv[0], then the ARGs; its environment is
exactly the --env pairs; stdin, stdout and stderr are the process's own.
"""

import sys

import wasmtime


def parse(argv):
    env = []
    while len(argv) > 1 and argv[0] == "--env":
        key, eq, value = argv[1].partition("=")
        if not key or not eq:
            sys.exit(f"wasmtime-wasi: --env wants KEY=VALUE, got {argv[1]}")
        env.append((key, value))
        argv = argv[2:]
    if not argv:
        sys.exit("usage: python3 wasmtime-wasi.py [--env K=V]... FILE.wasm [ARG]...")
    return env, argv


def main():
    env, argv = parse(sys.argv[1:])
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = argv
    wasi.env = env
    wasi.inherit_stdin()
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    store.set_wasi(wasi)
    module = wasmtime.Module.from_file(engine, argv[0])
    instance = linker.instantiate(store, module)
    try:
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
