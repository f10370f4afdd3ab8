//! The seccomp filter of `pvm run` in the real `pvm` binary, where it
//! covers the whole process: on by default, off with `--no-seccomp`, and
//! every built-in program runs under it on both engines with its exact
//! output, status and trap. (A forbidden call dying of SIGSYS with its
//! report is shown by the unit tests of `pvm::sandbox`.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pvm::programs::PROGRAMS;
use tests::{binary, process, temp_file, Outcome};

/// Runs the real `pvm` with empty stdin; fails if a signal killed it.
fn pvm(args: &[&str]) -> Outcome {
    let o = process("pvm", args, b"");
    assert!(!o.stderr.contains("seccomp"), "pvm {args:?}: {}", o.stderr);
    o
}

#[test]
fn every_builtin_program_runs_under_the_filter_on_both_engines() {
    for engine in ["interp", "jit"] {
        for p in PROGRAMS {
            let e = p.expectation();
            let mut args = vec!["run", p.name, "--engine", engine];
            args.extend(e.args.iter().map(String::as_str));
            let o = pvm(&args);
            assert_eq!(
                (o.status, o.stdout.as_str()),
                (e.status, e.stdout.as_str()),
                "{} on {engine}: {}",
                p.name,
                o.stderr
            );
            match &e.trap {
                Some(t) => assert!(o.stderr.contains(t.as_str()), "{} on {engine}: want {t:?}: {}", p.name, o.stderr),
                None => assert!(o.stderr.is_empty(), "{} on {engine}: {}", p.name, o.stderr),
            }
        }
    }
}

#[test]
fn statistics_the_trace_a_small_code_cache_and_a_block_dump_work_under_the_filter() {
    // (threshold 1: every block translated at once, so the 2 KiB cache fills)
    let o = pvm(&["run", "selfmod", "--engine", "jit", "--stats", "--cache-size", "2K", "--jit-threshold", "1"]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    let flushes = o.stderr.lines().find_map(|l| l.strip_prefix("cache flushes:")).map(str::trim);
    assert!(flushes.is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n >= 1)), "{}", o.stderr);
    let o = pvm(&["run", "recursion", "--stats"]);
    assert!(o.stderr.contains("opcode histogram:"), "{}", o.stderr);
    let o = pvm(&["run", "trap_div", "--trace"]);
    assert_eq!(o.status, 80, "{}", o.stderr);
    assert!(o.stderr.starts_with("0x001000  li r1, 4160                  r1=0x1040\n"), "{}", o.stderr);
    let o = pvm(&["run", "loop", "--engine", "jit", "--dump-block", "0x1028"]);
    assert!(o.stderr.contains("guest block 0x1028..") && o.stderr.contains("imul "), "{}", o.stderr);
}

/// The `Seccomp:` mode of process `pid` (0 off, 2 filter).
fn seccomp_mode(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Seccomp:")).and_then(|v| v.trim().parse().ok())
}

/// Starts `pvm run` on a program that never ends, waits up to `wait` for
/// `until` to hold of its seccomp mode, stops it, and returns the last mode seen.
fn mode_of_a_running_program(extra: &[&str], wait: Duration, until: fn(Option<u32>) -> bool) -> Option<u32> {
    let forever = temp_file("sandbox-forever.pasm", b"main: jmp main\n");
    let mut child = Command::new(binary("pvm"))
        .args([&["run", forever.to_str().unwrap()], extra].concat())
        .stdin(Stdio::null())
        .spawn()
        .expect("start pvm");
    let started = Instant::now();
    let mut mode = seccomp_mode(child.id());
    while !until(mode) && started.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(10));
        mode = seccomp_mode(child.id());
    }
    child.kill().expect("stop the endless program");
    let _ = child.wait();
    mode
}

#[test]
fn a_running_program_is_under_a_seccomp_filter_unless_no_seccomp_is_given() {
    for engine in ["interp", "jit"] {
        let mode = mode_of_a_running_program(&["--engine", engine], Duration::from_secs(10), |m| m == Some(2));
        assert_eq!(mode, Some(2), "pvm run --engine {engine} is not under a seccomp filter");
        // Half a second of running: long past loading, the filter would be on by now.
        let mode =
            mode_of_a_running_program(&["--engine", engine, "--no-seccomp"], Duration::from_millis(500), |_| false);
        assert_eq!(mode, Some(0), "pvm run --engine {engine} --no-seccomp is under a seccomp filter");
    }
}
