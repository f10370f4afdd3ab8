//! The WebAssembly programs' expectations, checked without our VM: every
//! program of `wasm-programs` runs under Node's `node:wasi` (V8) with its
//! arguments, environment and standard input, and must print exactly its
//! expected output and exit with its expected status; and the harness of
//! `pvm bench --wasm` agrees with every peer this machine has.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pvm::wasm_peers::WasmPeers;
use tests::{node_available, temp_path};
use wasm_programs::{runners, WasmProgram, PROGRAMS, QUICK};

/// V8's two compilers: Liftoff alone, then TurboFan alone.
const LIFTOFF: &[&str] = &["--liftoff", "--no-wasm-tier-up"];
const TURBOFAN: &[&str] = &["--no-liftoff"];

/// A directory of its own for each test (they run in parallel), holding
/// the node runner; modules are written there as `NAME.wasm`.
fn work_dir(test: &str) -> PathBuf {
    let dir = temp_path(test);
    std::fs::create_dir_all(&dir).expect("test dir");
    std::fs::write(dir.join("node-wasi.mjs"), runners::NODE_WASI).expect("write the runner");
    dir
}

/// Runs `p` under node with these V8 flags, its stdout a pipe.
fn node(dir: &Path, p: &WasmProgram, flags: &[&str]) -> Output {
    let wasm = dir.join(format!("{}.wasm", p.name));
    std::fs::write(&wasm, p.wasm).expect("write the module");
    let mut cmd = Command::new("node");
    cmd.args(["--no-warnings", "--experimental-wasi-unstable-preview1"]).args(flags).arg(dir.join("node-wasi.mjs"));
    for (k, v) in p.env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    cmd.arg(&wasm).args(p.args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("node starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = p.stdin;
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input);
    });
    let out = child.wait_with_output().expect("node runs");
    writer.join().expect("stdin writer");
    out
}

fn check(what: &str, p: &WasmProgram, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), p.expected_stdout, "{what} {}: stderr was {stderr}", p.name);
    assert_eq!(out.status.code(), Some(p.expected_status), "{what} {}: stderr was {stderr}", p.name);
}

#[test]
fn every_short_run_prints_its_expected_output_under_node() {
    if !node_available() {
        return;
    }
    let dir = work_dir("wasm-quick");
    for p in QUICK {
        check("node", p, &node(&dir, p, &[]));
    }
}

#[test]
fn liftoff_and_turbofan_each_agree_with_every_short_run() {
    if !node_available() {
        return;
    }
    let dir = work_dir("wasm-tiers");
    for p in QUICK {
        check("node --liftoff --no-wasm-tier-up", p, &node(&dir, p, LIFTOFF));
        check("node --no-liftoff", p, &node(&dir, p, TURBOFAN));
    }
}

#[test]
fn every_default_run_prints_its_expected_output_under_node() {
    if !node_available() {
        return;
    }
    // The benchmarks' default runs are what `pvm bench --wasm` checks; under
    // V8 they take a fraction of a second each.
    let dir = work_dir("wasm-default");
    for p in PROGRAMS {
        check("node", p, &node(&dir, p, &[]));
    }
}

#[test]
fn the_bench_harness_agrees_with_every_peer_found_on_every_short_run() {
    if !node_available() {
        return;
    }
    let peers = WasmPeers::discover().expect("the peers' work directory");
    assert!(peers.available().contains(&"V8 TurboFan"), "node is here, so the V8 peers are: {:?}", peers.available());
    let programs: Vec<&WasmProgram> = QUICK.iter().collect();
    // One round: each run's output and status are checked by the harness.
    let samples = peers.time_suite(&programs, 1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(samples.len(), QUICK.len());
    for s in &samples {
        assert_eq!(s.0.len(), peers.available().len());
    }
}
