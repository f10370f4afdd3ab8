//! Compiles every program in `c/` to a WASI command module with
//! `clang --target=wasm32-wasi -O2`, stripped, and writes the crate's table
//! (`programs.rs` in OUT_DIR) from the manifests `c/NAME.run`.
//!
//! `WASM_CC` names another clang; `WASI_SYSROOT` passes `--sysroot` (Debian's
//! wasi-libc is found without it).

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "src/manifest.rs"]
#[allow(dead_code)]
mod manifest;

use manifest::Manifest;

/// The programs, in table order: the six benchmarks first, as in
/// ../shared/bench-peers/RESULTS.md.
const PROGRAMS: &[&str] = &[
    "fib",
    "loop",
    "sieve",
    "collatz",
    "mandelbrot",
    "matmul",
    "hello",
    "stdin_count",
    "clock_random",
    "seek_stdout",
    "malloc_grow",
];

const INSTALL: &str = "the wasm32-wasi C toolchain is missing: install it with \
    `apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32` (clang, wasm-ld, the WASI libc, \
    the wasm32 compiler-rt builtins), or set WASM_CC to a clang that targets wasm32-wasi \
    (and WASI_SYSROOT to its sysroot)";

fn compiler() -> String {
    env::var("WASM_CC").unwrap_or_else(|_| "clang".to_string())
}

fn check_compiler(cc: &str) {
    match Command::new(cc).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("`{cc} --version` failed ({}): {INSTALL}", o.status),
        Err(e) => panic!("cannot run `{cc}`: {e}; {INSTALL}"),
    }
}

fn compile(cc: &str, source: &Path, output: &Path) {
    let mut cmd = Command::new(cc);
    cmd.args(["--target=wasm32-wasi", "-O2", "-Wall", "-Wextra", "-Wl,--strip-all", "-o"]).arg(output).arg(source);
    if let Ok(sysroot) = env::var("WASI_SYSROOT") {
        cmd.arg(format!("--sysroot={sysroot}"));
    }
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {shown}: {e}; {INSTALL}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{shown} failed with {}:\n{stderr}\n{INSTALL}", out.status);
    for line in stderr.lines() {
        println!("cargo:warning={line}");
    }
    let wasm = std::fs::read(output).unwrap_or_default();
    assert!(wasm.starts_with(b"\0asm\x01\0\0\0"), "{} is not a WebAssembly module", output.display());
}

/// A Rust expression for a `&'static [&'static str]`.
fn str_slice(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("&[{}]", items.join(", "))
}

fn path_literal(path: &Path) -> String {
    format!("{:?}", path.to_str().expect("the crate's paths are UTF-8"))
}

/// One `WasmProgram { .. }` literal.
fn entry(c: &Path, out: &Path, name: &str, m: &Manifest, quick: bool) -> String {
    let (args, stdout) = match (&m.quick_args, quick) {
        (Some(args), true) => (args, c.join(format!("{name}.quick.out"))),
        _ => (&m.args, c.join(format!("{name}.out"))),
    };
    let env: Vec<String> = m.env.iter().map(|(k, v)| format!("({k:?}, {v:?})")).collect();
    let stdin =
        m.stdin.as_ref().map_or("b\"\"".to_string(), |f| format!("include_bytes!({})", path_literal(&c.join(f))));
    let mut s = String::new();
    let _ = write!(
        s,
        "    WasmProgram {{\n        name: {name:?},\n        description: {:?},\n        benchmark: {},\n        \
         wasm: include_bytes!({}),\n        c_source: include_str!({}),\n        args: {},\n        env: &[{}],\n        \
         stdin: {stdin},\n        expected_stdout: include_str!({}),\n        expected_status: {},\n    }},\n",
        m.description,
        m.benchmark,
        path_literal(&out.join(format!("{name}.wasm"))),
        path_literal(&c.join(format!("{name}.c"))),
        str_slice(args),
        env.join(", "),
        path_literal(&stdout),
        m.status,
    );
    s
}

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let c = root.join("c");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=c");
    println!("cargo:rerun-if-changed=src/manifest.rs");
    println!("cargo:rerun-if-env-changed=WASM_CC");
    println!("cargo:rerun-if-env-changed=WASI_SYSROOT");
    let cc = compiler();
    check_compiler(&cc);
    let mut table =
        String::from("/// Every program's default run, benchmarks first.\npub const PROGRAMS: &[WasmProgram] = &[\n");
    let mut quick = String::from(
        "/// Every program's short run: the benchmarks with their `quick-arg`s, the others as in [`PROGRAMS`].\n\
         pub const QUICK: &[WasmProgram] = &[\n",
    );
    for &name in PROGRAMS {
        let run = c.join(format!("{name}.run"));
        let text = std::fs::read_to_string(&run).unwrap_or_else(|e| panic!("cannot read {}: {e}", run.display()));
        let m = Manifest::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", run.display()));
        compile(&cc, &c.join(format!("{name}.c")), &out.join(format!("{name}.wasm")));
        table.push_str(&entry(&c, &out, name, &m, false));
        quick.push_str(&entry(&c, &out, name, &m, true));
    }
    table.push_str("];\n\n");
    quick.push_str("];\n");
    table.push_str(&quick);
    let generated = out.join("programs.rs");
    std::fs::write(&generated, table).unwrap_or_else(|e| panic!("cannot write {}: {e}", generated.display()));
}
