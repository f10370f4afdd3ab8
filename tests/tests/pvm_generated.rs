//! The layout-varying differential generator (`tests::gen`): programs of
//! snippets in memories of 1 to 2047 MiB, code at the top or the bottom,
//! data at both edges, run on both engines and compared to the last bit.
//!
//! `VIRTLAB_GEN_CASES=N` and `VIRTLAB_GEN_SEED=S` run more cases or other
//! ones (the default run is what CI does); `VIRTLAB_GEN_TRACE=1` names each
//! case as it starts.

use std::collections::BTreeMap;

use pvm::interp::Outcome;
use tests::gen::{self, CodePlace, Verdict};
use tests::Rng;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn generated_programs_in_varied_layouts_agree_on_both_engines() {
    let cases = env("VIRTLAB_GEN_CASES", 4000);
    let mut rng = Rng(env("VIRTLAB_GEN_SEED", 0x5eed_1a70_u64) | 1);
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut layouts: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = Vec::new();
    // (VIRTLAB_GEN_TRACE=1 names each case before it runs, to find one that
    // takes the whole process down)
    let trace = std::env::var_os("VIRTLAB_GEN_TRACE").is_some();
    for n in 0..cases {
        let case = gen::case(&mut rng);
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
        *layouts.entry(place.into()).or_default() += 1;
        let mem = if case.layout.mem_mib > 128 { "memory > 128 MiB" } else { "memory <= 128 MiB" };
        *layouts.entry(mem.into()).or_default() += 1;
        match gen::check(&case) {
            Ok(Verdict::Agree(f)) => {
                let key = match &f.outcome {
                    Outcome::Exited(_) => "exited".to_string(),
                    Outcome::Trapped(t) => format!("{:?}", t.kind).split(['(', ' ']).next().unwrap_or("").to_string(),
                };
                *outcomes.entry(key).or_default() += 1;
            }
            Ok(Verdict::Skipped(why)) => *outcomes.entry(format!("skipped: {why}")).or_default() += 1,
            Err(e) => {
                failures.push(format!("case {n}: {e}"));
                if failures.len() >= 3 {
                    break;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} disagreements, the first:\n{}", failures.len(), failures.join("\n\n"));
    eprintln!("outcomes: {outcomes:?}\nlayouts: {layouts:?}");
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
