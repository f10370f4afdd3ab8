//! The table against the files it was built from.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

use super::*;

fn c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("c")
}

#[test]
fn every_c_source_is_in_the_table_once_and_every_module_is_wasm() {
    let mut sources: Vec<String> = std::fs::read_dir(c_dir())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".c").map(String::from))
        .collect();
    sources.sort();
    let mut names: Vec<String> = PROGRAMS.iter().map(|p| p.name.to_string()).collect();
    names.sort();
    assert_eq!(names, sources, "build.rs's PROGRAMS must list every c/*.c once");
    for p in PROGRAMS {
        assert!(p.wasm.starts_with(b"\0asm\x01\0\0\0"), "{}", p.name);
        assert!(p.expected_stdout.ends_with('\n'), "{}: the expected output ends with a newline", p.name);
    }
}

#[test]
fn the_benchmarks_are_the_six_of_bench_peers_and_have_short_runs() {
    let names: Vec<&str> = benchmarks().map(|p| p.name).collect();
    assert_eq!(names, ["fib", "loop", "sieve", "collatz", "mandelbrot", "matmul"]);
    for p in benchmarks() {
        let q = quick(p.name).unwrap();
        assert!(p.args.is_empty(), "{}: the default run uses the source's default arguments", p.name);
        assert!(!q.args.is_empty(), "{}: the short run has arguments", p.name);
        assert_ne!(p.expected_stdout, q.expected_stdout, "{}", p.name);
    }
    for p in PROGRAMS.iter().filter(|p| !p.benchmark) {
        assert_eq!(quick(p.name), Some(p), "{}: a program that is not a benchmark is quick already", p.name);
    }
}

#[test]
fn manifests_give_arguments_environment_stdin_and_status() {
    let hello = find("hello").unwrap();
    assert_eq!(hello.args, ["--exit", "3", "two words"]);
    assert_eq!(hello.env, [("HELLO_GREETING", "hi there"), ("HELLO_NAME", "world")]);
    assert_eq!(hello.expected_status, 3);
    assert!(hello.expected_stdout.contains("argv[3] = two words\n"));
    let stdin = find("stdin_count").unwrap();
    assert_eq!(stdin.stdin, std::fs::read(c_dir().join("stdin_count.in")).unwrap());
    assert_eq!(stdin.expected_stdout, format!("stdin: {} bytes, 12 lines, fnv1a 79f0ca7c\n", stdin.stdin.len()));
}

/// `long` -> `long long`, `%ld` -> `%lld`, `atol(` -> `atoll(`, whole words only.
fn widen(source: &str) -> String {
    let mut out = String::new();
    let mut rest = source;
    while let Some(i) = rest.find("long") {
        let before = rest[..i].chars().next_back();
        let after = rest[i + 4..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..i]);
        out.push_str(if word(before) || word(after) { "long" } else { "long long" });
        rest = &rest[i + 4..];
    }
    out.push_str(rest);
    out.replace("%ld", "%lld").replace("atol(", "atoll(")
}

#[test]
fn widening_touches_whole_words_only() {
    assert_eq!(widen("long longest x_long atol(a) %ld"), "long long longest x_long atoll(a) %lld");
}

#[test]
fn the_benchmarks_are_the_bench_peers_sources_widened_with_their_checksum_lines() {
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench-peers");
    if !peers.join("RESULTS.md").exists() {
        use std::io::Write;
        // Straight to the process's stderr: libtest captures eprintln!.
        let _ = writeln!(std::io::stderr(), "skipped: no {} to compare the copies with", peers.display());
        return;
    }
    let results = std::fs::read_to_string(peers.join("RESULTS.md")).unwrap();
    for p in benchmarks() {
        let original = std::fs::read_to_string(peers.join(p.name).join(format!("{}.c", p.name))).unwrap();
        let (note, copy) = p.c_source.split_once('\n').unwrap();
        assert!(note.starts_with("/* wasm-programs: "), "{}: the copy's first line says what changed", p.name);
        assert_eq!(copy, widen(&original), "{}: c/{}.c must be the original, widened", p.name, p.name);
        let line = format!("`{}`", p.expected_stdout.trim_end());
        assert!(results.contains(&line), "{}: RESULTS.md has no checksum line {line}", p.name);
    }
}
