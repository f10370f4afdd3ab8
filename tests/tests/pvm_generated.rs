//! The layout-varying differential generator (`tests::gen`): programs of
//! snippets in memories of 1 to 2047 MiB, code at the top or the bottom,
//! data at both edges, run on both engines and compared to the last bit.
//!
//! `VIRTLAB_GEN_CASES=N` and `VIRTLAB_GEN_SEED=S` run more cases or other
//! ones (the default run is what CI does); `VIRTLAB_GEN_TRACE=1` names each
//! case as it starts.

#![allow(clippy::print_stderr)] // the tests report what the generator reached

use std::collections::BTreeMap;

use pvm::interp::Outcome;
use tests::gen::{self, CodePlace, Verdict};
use tests::Rng;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What a batch of generated cases did.
#[derive(Default)]
struct Tally {
    outcomes: BTreeMap<String, u64>,
    layouts: BTreeMap<String, u64>,
    faults_recovered: u64,
    guard_faults: u64,
    failures: Vec<String>,
}

/// Generates and checks `cases` cases from `seed`, with `slack` bytes of
/// loosened bounds checks in the translator.
fn run_cases(cases: u64, seed: u64, slack: u64) -> Tally {
    let mut rng = Rng(seed | 1);
    let mut t = Tally::default();
    // (VIRTLAB_GEN_TRACE=1 names each case before it runs, to find one that
    // takes the whole process down)
    let trace = std::env::var_os("VIRTLAB_GEN_TRACE").is_some();
    for n in 0..cases {
        let mut case = gen::case(&mut rng);
        case.cfg.bounds_slack = slack;
        if trace {
            eprintln!("case {n}");
        }
        let place = match case.layout.code {
            CodePlace::Top => "code at the top",
            CodePlace::NearTop(_) => "code near the top",
            CodePlace::Low => "code at 0x1000",
            CodePlace::Zero => "code at 0",
            CodePlace::Anywhere(_) => "code anywhere",
        };
        *t.layouts.entry(place.into()).or_default() += 1;
        let mem = if case.layout.mem_mib > 128 { "memory > 128 MiB" } else { "memory <= 128 MiB" };
        *t.layouts.entry(mem.into()).or_default() += 1;
        match gen::check(&case) {
            Ok(Verdict::Agree(_, stats)) if slack == 0 && stats.faults_recovered > 0 => {
                // Agreement, thanks to the guard regions: a bounds check let
                // an access through.
                t.failures.push(format!("case {n}: an access got past its bounds check (fault recovered)"));
                if t.failures.len() >= 3 {
                    break;
                }
            }
            Ok(Verdict::Agree(f, stats)) => {
                let key = match &f.outcome {
                    Outcome::Exited(_) => "exited".to_string(),
                    Outcome::Returned => "returned".to_string(),
                    Outcome::ThreadOp => "thread op".to_string(),
                    Outcome::Trapped(t) => format!("{:?}", t.kind).split(['(', ' ']).next().unwrap_or("").to_string(),
                };
                *t.outcomes.entry(key).or_default() += 1;
                t.faults_recovered += stats.faults_recovered;
                t.guard_faults += stats.guard_faults;
            }
            Ok(Verdict::Skipped(why)) => *t.outcomes.entry(format!("skipped: {why}")).or_default() += 1,
            Err(e) => {
                t.failures.push(format!("case {n}: {e}"));
                if t.failures.len() >= 3 {
                    break;
                }
            }
        }
    }
    t
}

#[test]
fn generated_programs_in_varied_layouts_agree_on_both_engines() {
    let cases = env("VIRTLAB_GEN_CASES", 10_000);
    let t = run_cases(cases, env("VIRTLAB_GEN_SEED", 0x5eed_1a70), 0);
    let (outcomes, layouts) = (&t.outcomes, &t.layouts);
    // (a failure is a disagreement, or an access that got past its bounds
    // check and was caught by the guard regions)
    assert!(t.failures.is_empty(), "{} failures, the first:\n{}", t.failures.len(), t.failures.join("\n\n"));
    eprintln!("outcomes: {outcomes:?}\nlayouts: {layouts:?}\nguard faults: {}", t.guard_faults);
    // Linear-memory accesses past guest memory reached the guard regions.
    assert!(t.guard_faults > 0, "no linear access relied on the guard regions");
    // The generator reaches the outcomes and layouts it is for.
    for kind in ["exited", "OutOfBounds", "FuelExhausted", "BadJumpTarget", "StackOverflow", "DivisionByZero"] {
        assert!(outcomes.get(kind).copied().unwrap_or(0) * 100 >= cases, "{kind} in under 1% of cases: {outcomes:?}");
    }
    for place in ["code at the top", "code near the top", "code at 0x1000", "memory > 128 MiB"] {
        assert!(layouts.get(place).copied().unwrap_or(0) * 100 >= cases, "{place} in under 1%: {layouts:?}");
    }
    let skipped: u64 = outcomes.iter().filter(|(k, _)| k.starts_with("skipped")).map(|(_, v)| v).sum();
    assert!(skipped * 10 < cases, "{skipped} of {cases} cases skipped: {outcomes:?}");
}

#[test]
fn with_bounds_checks_loosened_the_guard_regions_catch_every_stray_access() {
    // Defence in depth, broken on purpose: every bounds check lets accesses
    // up to `slack` bytes past its limit through. Those fault in the guard
    // regions around guest memory, and the fault handler hands their
    // instruction to the interpreter: still the same trap, at the same pc,
    // after the same count, and no write reaches host memory.
    let cases = env("VIRTLAB_GEN_CASES", 10_000) / 4;
    let mut recovered = 0;
    for (n, slack) in [8u64, 4096, 1 << 20, 1 << 30].into_iter().enumerate() {
        let t = run_cases(cases / 4, env("VIRTLAB_GEN_SEED", 0x5eed_1a70) + n as u64 + 1, slack);
        assert!(
            t.failures.is_empty(),
            "slack {slack}: {} disagreements, the first:\n{}",
            t.failures.len(),
            t.failures.join("\n\n")
        );
        recovered += t.faults_recovered;
    }
    eprintln!("faults recovered in {cases} cases: {recovered}");
    assert!(recovered * 50 >= cases, "only {recovered} faults in {cases} cases: the guards were barely tested");
}
