//! Every C program of `wasm-programs` (compiled by clang to wasm32-wasi)
//! runs through `pvm run prog.wasm -- ARGS` on both engines and prints
//! exactly its expected output, with its exit status; the benchmarks in
//! their short runs. Plus the errors a user meets first.

use pvm::machine::BufferIo;
use tests::temp_file;
use wasm_programs::{WasmProgram, PROGRAMS, QUICK};

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

fn run(engine: &str, p: &WasmProgram, extra: &[&str]) -> Run {
    let path = temp_file(&format!("{}.wasm", p.name), p.wasm);
    let path = path.to_string_lossy().into_owned();
    let env: Vec<String> = p.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut args = vec!["run", path.as_str(), "--engine", engine, "--no-seccomp"];
    args.extend_from_slice(extra);
    for e in &env {
        args.extend(["--env", e.as_str()]);
    }
    args.push("--");
    args.extend_from_slice(p.args);
    let mut io = BufferIo { input: p.stdin.to_vec(), ..BufferIo::default() };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = pvm::cli::main_with(&args, &mut io, &mut out, &mut err);
    err.extend_from_slice(&io.errors);
    Run {
        status,
        stdout: String::from_utf8_lossy(&io.output).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

fn programs() -> impl Iterator<Item = &'static WasmProgram> {
    PROGRAMS.iter().filter(|p| !p.benchmark).chain(QUICK.iter().filter(|p| p.benchmark))
}

#[test]
fn every_wasm_program_prints_its_expected_output_and_status_on_both_engines() {
    let mut n = 0;
    for p in programs() {
        for engine in ["interp", "jit"] {
            let r = run(engine, p, &[]);
            assert_eq!(r.stdout, p.expected_stdout, "{} on {engine}: stderr {}", p.name, r.stderr);
            assert_eq!(r.status, p.expected_status, "{} on {engine}: stderr {}", p.name, r.stderr);
            n += 1;
        }
    }
    assert!(n >= 2 * 11, "only {n} runs");
}

/// The retired count `--stats` reports.
fn retired(r: &Run) -> Option<u64> {
    r.stderr.lines().find_map(|l| l.strip_prefix("retired instructions:")).and_then(|n| n.trim().parse().ok())
}

#[test]
fn every_wasm_program_retires_as_many_instructions_on_the_translator_whatever_its_threshold() {
    for p in programs() {
        let interp = run("interp", p, &["--stats"]);
        let want = retired(&interp);
        assert!(want.is_some_and(|n| n > 0), "{}: {}", p.name, interp.stderr);
        for t in tests::diff::thresholds() {
            let t = t.to_string();
            let r = run("jit", p, &["--stats", "--jit-threshold", &t]);
            let what = format!("{} on jit, --jit-threshold {t}", p.name);
            assert_eq!((&r.stdout, r.status), (&interp.stdout, interp.status), "{what}: {}", r.stderr);
            if retired(&r) != want {
                // Tell an engine disagreement from a program whose count
                // varies between runs (the count must not depend on clocks
                // or random bytes: see clock_random.c).
                let again = retired(&run("interp", p, &["--stats"]));
                assert_eq!(again, want, "{}: the interpreter retired another count on a second run", p.name);
            }
            assert_eq!(retired(&r), want, "{what}: {}", r.stderr);
            assert!(r.stderr.contains(&format!("jit threshold:        {t} ")), "{what}: {}", r.stderr);
        }
    }
}

#[test]
fn a_linear_memory_ceiling_makes_growth_fail_cleanly_or_is_a_clear_error() {
    // malloc_grow needs 48 MiB: under a ceiling of 1 MiB memory.grow returns
    // -1, malloc returns NULL and the program says so, on both engines.
    let p = PROGRAMS.iter().find(|p| p.name == "malloc_grow").expect("malloc_grow");
    for engine in ["interp", "jit"] {
        let r = run(engine, p, &["--wasm-memory", "1"]);
        assert_eq!(r.status, 1, "{engine}: {}", r.stderr);
        assert!(r.stdout.contains("failed"), "{engine}: {}", r.stdout);
    }
    // A module whose initial memory (32 pages) is above the ceiling (16).
    let module = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\x05\x03\x01\0\x20\x07\x0a\x01\x06_start\0\0\x0a\x04\x01\x02\0\x0b";
    let path = temp_file("big.wasm", module).to_string_lossy().into_owned();
    let mut io = BufferIo::default();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let ok = pvm::cli::main_with(&["run", &path, "--no-seccomp"], &mut io, &mut out, &mut err);
    assert_eq!(ok, 0, "{}", String::from_utf8_lossy(&err));
    err.clear();
    let status =
        pvm::cli::main_with(&["run", &path, "--wasm-memory", "1", "--no-seccomp"], &mut io, &mut out, &mut err);
    let err = String::from_utf8_lossy(&err);
    assert_ne!(status, 0);
    assert!(
        err.contains("memory of 32 pages is more than the ceiling of 16 pages (raise it with --wasm-memory)"),
        "{err}"
    );
}

#[test]
fn bad_modules_are_refused_with_the_offset_and_reason() {
    let dir_file = |name: &str, bytes: &[u8]| temp_file(name, bytes).to_string_lossy().into_owned();
    let cases: [(&str, &[u8], &str); 3] = [
        ("truncated.wasm", b"\0asm\x01\0\0\0\x01\x05", "malformed or invalid module at byte"),
        ("noentry.wasm", b"\0asm\x01\0\0\0", "exports no function _start"),
        // (import "env" "f" (func))
        ("import.wasm", b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x02\x09\x01\x03env\x01f\0\0", "unknown import env.f"),
    ];
    for (name, bytes, want) in cases {
        let path = dir_file(name, bytes);
        let mut io = BufferIo::default();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = pvm::cli::main_with(&["run", &path, "--no-seccomp"], &mut io, &mut out, &mut err);
        let err = String::from_utf8_lossy(&err);
        assert_ne!(status, 0, "{name}");
        assert!(err.contains(want), "{name}: {err}");
    }
}
