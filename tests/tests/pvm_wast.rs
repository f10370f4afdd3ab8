//! The WebAssembly 1.0 test suite on both engines: every directive of
//! every script passes, except the ones in
//! `fixtures/wasm-testsuite.expected-failures` (with their reasons).

#![allow(clippy::print_stderr)] // the tests report the counts

use std::collections::BTreeSet;
use std::path::PathBuf;

use pvm::run::Engine;
use pvm::wasm::wast::run_script_tiered;

fn suite_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VIRTLAB_WASM_TESTSUITE") {
        return d.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/wasm-testsuite")
}

fn expected() -> BTreeSet<String> {
    let text = include_str!("../fixtures/wasm-testsuite.expected-failures");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn run_suite(engine: Engine, jit_threshold: u32) {
    let dir = suite_dir();
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the test suite is not at {} ({e}): set VIRTLAB_WASM_TESTSUITE", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wast"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 60, "only {} scripts in {}", scripts.len(), dir.display());
    let (mut passed, mut failed) = (0, BTreeSet::new());
    let mut messages = Vec::new();
    for path in &scripts {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let report = run_script_tiered(&name, &text, engine, jit_threshold).unwrap_or_else(|e| panic!("{e}"));
        passed += report.passed;
        for f in &report.failures {
            let key = format!("{name}:{}", f.line);
            messages.push(format!("{key}: {}", f.message));
            failed.insert(key);
        }
    }
    let want = expected();
    let unexpected: Vec<&String> =
        messages.iter().filter(|m| !want.iter().any(|w| m.starts_with(&format!("{w}:")))).collect();
    let fixed: Vec<&String> = want.difference(&failed).collect();
    eprintln!(
        "{}: {passed} directives passed, {} failed (all expected), in {} scripts",
        engine.name(),
        failed.len(),
        scripts.len()
    );
    assert!(
        unexpected.is_empty(),
        "{}: unexpected failures:\n{}",
        engine.name(),
        unexpected.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
    assert!(fixed.is_empty(), "{}: these now pass, remove them from the expected failures: {fixed:?}", engine.name());
    assert!(passed > 17_000, "{}: only {passed} directives passed", engine.name());
}

#[test]
fn the_1_0_test_suite_passes_on_the_interpreter() {
    run_suite(Engine::Interp, 1);
}

#[test]
fn the_1_0_test_suite_passes_on_the_translator() {
    run_suite(Engine::Jit, 1);
}

#[test]
fn the_1_0_test_suite_passes_on_the_translator_with_interpreted_blocks_mixed_in() {
    for t in tests::diff::thresholds().into_iter().skip(1) {
        run_suite(Engine::Jit, t);
    }
}

#[test]
fn the_lowering_edge_cases_pass_on_both_engines() {
    // Our own script (fixtures/lowering.wast): the lowering's shortcuts
    // where they apply and where they must not (two modules and 55 asserts).
    let text = include_str!("../fixtures/lowering.wast");
    let mut runs = vec![(Engine::Interp, 1)];
    runs.extend(tests::diff::thresholds().into_iter().map(|t| (Engine::Jit, t)));
    for (engine, t) in runs {
        let report = run_script_tiered("lowering.wast", text, engine, t).unwrap_or_else(|e| panic!("{e}"));
        let failures: Vec<String> = report.failures.iter().map(|f| format!("line {}: {}", f.line, f.message)).collect();
        assert!(failures.is_empty(), "{} (threshold {t}): {failures:#?}", engine.name());
        assert_eq!(report.passed, 57, "{} (threshold {t})", engine.name());
    }
}
