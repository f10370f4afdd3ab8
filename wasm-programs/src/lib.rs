//! Small C programs compiled to WebAssembly (`wasm32-wasi` command modules)
//! when this crate builds, each with its expected output, for running
//! under our VM and, to check the expectations themselves, under other
//! runtimes (`tests/tests/wasm_programs_peers.rs`, `pvm::wasm_peers`).
//!
//! The sources are in `c/`: the six benchmarks of ../shared/bench-peers
//! (copied with `long` widened to `long long`, since `long` has 32 bits on
//! wasm32) and small programs that make the WASI calls a wasi-libc program
//! typically needs. Beside each `c/NAME.c` are its run manifest
//! `c/NAME.run` (arguments, environment, standard input, exit status: see
//! `src/manifest.rs`) and its exact expected standard output `c/NAME.out`
//! (`c/NAME.quick.out` for a benchmark's short run). No `.wasm` file is
//! committed: `build.rs` compiles them with clang (docs/wasm-programs.md).
//!
//! ```
//! let fib = wasm_programs::find("fib").unwrap();
//! assert!(fib.wasm.starts_with(b"\0asm"));
//! assert_eq!((fib.args, fib.expected_stdout), (&[][..], "fib(37) = 24157817\n"));
//! let quick = wasm_programs::quick("fib").unwrap();
//! assert_eq!((quick.args, quick.expected_stdout), (&["25"][..], "fib(25) = 75025\n"));
//! assert_eq!(wasm_programs::benchmarks().count(), 6);
//! ```

#[cfg(test)]
mod manifest;

/// One run of one program: the module, what it is given, what it must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WasmProgram {
    /// The source's name without `.c`.
    pub name: &'static str,
    /// One line saying what it shows.
    pub description: &'static str,
    /// One of the six benchmarks of ../shared/bench-peers.
    pub benchmark: bool,
    /// The WASI command module (exports `_start` and `memory`).
    pub wasm: &'static [u8],
    /// The C source it was compiled from (also compiled natively by the peers).
    pub c_source: &'static str,
    /// Arguments after argv[0]; runtimes differ in what argv[0] is.
    pub args: &'static [&'static str],
    /// The whole environment the program sees, sorted by key.
    pub env: &'static [(&'static str, &'static str)],
    /// Standard input (empty: none).
    pub stdin: &'static [u8],
    /// Exact standard output of a correct run.
    pub expected_stdout: &'static str,
    /// Exit status of a correct run.
    pub expected_status: i32,
}

include!(concat!(env!("OUT_DIR"), "/programs.rs"));

/// The runner scripts that start a module under another runtime, as whole
/// processes. Each takes `[--env K=V]... FILE.wasm [ARG]...`, gives the
/// module exactly that environment and the process's stdin, stdout and
/// stderr, and exits with the module's status.
pub mod runners {
    /// `node [V8 flags] node-wasi.mjs ...`: Node's `node:wasi` (preview1).
    pub const NODE_WASI: &str = include_str!("../runners/node-wasi.mjs");
    /// `python3 wasmtime-wasi.py ...`: wasmtime through its PyPI package.
    pub const WASMTIME_WASI: &str = include_str!("../runners/wasmtime-wasi.py");
    /// `python3 wasm3-wasi.py ...`: wasm3 through pywasm3, with the WASI
    /// calls written in the script (pywasm3 0.5 has none).
    pub const WASM3_WASI: &str = include_str!("../runners/wasm3-wasi.py");
}

/// The default run of the program called `name`.
pub fn find(name: &str) -> Option<&'static WasmProgram> {
    PROGRAMS.iter().find(|p| p.name == name)
}

/// The short run of the program called `name` (for tests).
pub fn quick(name: &str) -> Option<&'static WasmProgram> {
    QUICK.iter().find(|p| p.name == name)
}

/// The six benchmarks' default runs, in the order of ../shared/bench-peers/RESULTS.md.
pub fn benchmarks() -> impl Iterator<Item = &'static WasmProgram> {
    PROGRAMS.iter().filter(|p| p.benchmark)
}

#[cfg(test)]
mod tests;
