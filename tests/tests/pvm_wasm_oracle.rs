//! The pvm's WebAssembly front end against an outside implementation
//! (`wasmi` 2.0), on both engines:
//!
//! - random valid modules from `wasm-smith` (1.0 with sign extension,
//!   saturating truncation and multi-value, as the front end supports;
//!   NaNs canonicalised, so results compare bit for bit), every exported
//!   function called with edge arguments;
//! - modules written to hit the end of linear memory: every load and store
//!   width, offsets around the end and around 2^32, addresses from 8 bytes
//!   below to 8 above, memories of 0, 1 and 2 pages and grown ones.
//!
//! A divergence fails the test with the module saved to a temporary file.
//! `VIRTLAB_WASM_ORACLE_MODULES=n` sets how many random modules to try.

#![allow(clippy::print_stderr)] // the tests report their counts

mod wasm_oracle;

use std::collections::BTreeMap;

use pvm::wasm::module::ValType;
use pvm::wasm::value::Value;
use wasm_oracle::{args, smith_config, wasmi_engine, Divergence, Outcome, Trio, ARG_SETS, LIMITS};

/// Random modules tried by default (some 30 s in the dev profile on a
/// busy 2-core machine).
const MODULES: u64 = 1500;

/// What the runs came to.
#[derive(Debug, Default)]
struct Counts {
    modules: u64,
    not_generated: u64,
    refused: BTreeMap<String, u64>,
    calls: u64,
    outcomes: BTreeMap<String, u64>,
    stopped: BTreeMap<String, u64>,
}

impl Counts {
    fn report(&self, what: &str) {
        eprintln!(
            "{what}: {} modules ({} not generated), {} calls compared, outcomes {:?}, \
             instantiations refused or trapped {:?}, modules stopped by {:?}",
            self.modules, self.not_generated, self.calls, self.outcomes, self.refused, self.stopped
        );
    }
}

/// splitmix64: the pseudo-random bytes wasm-smith reads.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Saves the module and fails with the divergence.
fn fail(name: &str, wasm: &[u8], d: &Divergence) -> ! {
    let path = std::env::temp_dir().join(format!("pvm-wasm-oracle-{name}.wasm"));
    let saved = match std::fs::write(&path, wasm) {
        Ok(()) => format!("saved to {}", path.display()),
        Err(e) => format!("could not be saved to {}: {e}", path.display()),
    };
    panic!("{name}: the pvm diverges from wasmi: {}\n(the module, {} bytes, {saved})", d.0, wasm.len());
}

/// Instantiates `wasm` and calls every exported function with every
/// argument set, until a side runs out of fuel or stack.
fn run_module(engine: &wasmi::Engine, wasm: &[u8], counts: &mut Counts) -> Result<(), Divergence> {
    counts.modules += 1;
    let (trio, outcome) = Trio::new(engine, wasm, LIMITS)?;
    let Some(mut trio) = trio else {
        *counts.refused.entry(outcome.kind().to_string()).or_default() += 1;
        return Ok(());
    };
    let funcs = trio.funcs().to_vec();
    for (name, ty) in &funcs {
        let sets = if ty.params.is_empty() { 1 } else { ARG_SETS };
        for set in 0..sets {
            let out = trio.call(name, &args(&ty.params, set))?;
            if out.resource_out() {
                *counts.stopped.entry(out.kind().to_string()).or_default() += 1;
                return Ok(());
            }
            counts.calls += 1;
            *counts.outcomes.entry(out.kind().to_string()).or_default() += 1;
        }
    }
    Ok(())
}

#[test]
fn random_modules_agree_with_wasmi() {
    let n = std::env::var("VIRTLAB_WASM_ORACLE_MODULES").ok().and_then(|v| v.parse().ok()).unwrap_or(MODULES);
    let engine = wasmi_engine();
    let mut counts = Counts::default();
    for seed in 0..n {
        let bytes = random_bytes(seed, 4096 + (seed as usize % 16) * 4096);
        let mut u = arbitrary::Unstructured::new(&bytes);
        let Ok(module) = wasm_smith::Module::new(smith_config(LIMITS), &mut u) else {
            counts.not_generated += 1;
            continue;
        };
        let wasm = module.to_bytes();
        if let Err(d) = run_module(&engine, &wasm, &mut counts) {
            fail(&format!("seed-{seed}"), &wasm, &d);
        }
    }
    counts.report("wasm-smith modules");
    assert!(counts.modules >= n * 9 / 10, "only {} of {n} modules generated", counts.modules);
    assert!(counts.calls >= counts.modules, "only {} calls in {} modules", counts.calls, counts.modules);
    assert!(counts.outcomes.get("ok").copied().unwrap_or(0) > 0, "no call returned");
    assert!(counts.outcomes.len() >= 4, "too few kinds of outcome: {:?}", counts.outcomes);
}

/// Every access the front end lowers: (instruction, value type, bytes).
const LOADS: &[(&str, ValType)] = &[
    ("i32.load", ValType::I32),
    ("i32.load8_s", ValType::I32),
    ("i32.load8_u", ValType::I32),
    ("i32.load16_s", ValType::I32),
    ("i32.load16_u", ValType::I32),
    ("i64.load", ValType::I64),
    ("i64.load8_s", ValType::I64),
    ("i64.load8_u", ValType::I64),
    ("i64.load16_s", ValType::I64),
    ("i64.load16_u", ValType::I64),
    ("i64.load32_s", ValType::I64),
    ("i64.load32_u", ValType::I64),
    ("f32.load", ValType::F32),
    ("f64.load", ValType::F64),
];
const STORES: &[(&str, ValType)] = &[
    ("i32.store", ValType::I32),
    ("i32.store8", ValType::I32),
    ("i32.store16", ValType::I32),
    ("i64.store", ValType::I64),
    ("i64.store8", ValType::I64),
    ("i64.store16", ValType::I64),
    ("i64.store32", ValType::I64),
    ("f32.store", ValType::F32),
    ("f64.store", ValType::F64),
];
/// Static offsets: small ones, around a page or two, around 2^31 and 2^32.
const OFFSETS: &[u32] =
    &[0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 65535, 65536, 65537, 131072, 0x7fff_ffff, 0x8000_0000, 0xffff_fff8, 0xffff_ffff];

fn type_name(t: ValType) -> &'static str {
    match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
    }
}

/// A module with memory `limits` and one function per access and offset:
/// `<op>@<offset>`, taking the address (and, for a store, the value); and
/// `grow` and `fill` (a byte pattern over a range).
fn edge_module(limits: &str) -> String {
    let mut text = format!(
        "(module (memory (export \"mem\") {limits})
  (func (export \"grow\") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export \"fill\") (param $at i32) (param $end i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $at) (local.get $end)))
      (i32.store8 (local.get $at) (i32.add (i32.mul (local.get $at) (i32.const 37)) (i32.const 0x5b)))
      (local.set $at (i32.add (local.get $at) (i32.const 1)))
      (br $next))))\n"
    );
    for &o in OFFSETS {
        for (op, t) in LOADS {
            let t = type_name(*t);
            text +=
                &format!("  (func (export \"{op}@{o}\") (param i32) (result {t}) ({op} offset={o} (local.get 0)))\n");
        }
        for (op, t) in STORES {
            let t = type_name(*t);
            text += &format!(
                "  (func (export \"{op}@{o}\") (param i32 {t}) ({op} offset={o} (local.get 0) (local.get 1)))\n"
            );
        }
    }
    text + ")"
}

/// A value of type `t` from the counter `k` (NaN patterns included).
fn value(t: ValType, k: u64) -> Value {
    let bits = random_bytes(k, 8);
    let x = u64::from_le_bytes(bits.try_into().unwrap_or([0; 8]));
    let signalling_nan = k.is_multiple_of(3);
    match t {
        ValType::I32 => Value::I32(x as u32),
        ValType::I64 => Value::I64(x),
        ValType::F32 => Value::F32(if signalling_nan { 0x7fa0_0001 } else { x as u32 }),
        ValType::F64 => Value::F64(if signalling_nan { 0xfff0_0000_0000_0001 } else { x }),
    }
}

/// Every access and offset at addresses from 8 below to 8 above
/// `end - offset` (wrapping: offsets past the end give addresses near
/// 2^32, whose effective address is past 2^32).
fn probe_end(trio: &mut Trio, end: u32, counts: &mut Counts) -> Result<(), Divergence> {
    for &o in OFFSETS {
        for d in -8i64..=8 {
            let addr = (i64::from(end) - i64::from(o) + d) as u32;
            for (op, _) in LOADS {
                record(trio.call(&format!("{op}@{o}"), &[Value::I32(addr)])?, counts);
            }
            for (op, t) in STORES {
                let v = value(*t, counts.calls);
                record(trio.call(&format!("{op}@{o}"), &[Value::I32(addr), v])?, counts);
                let around = end as usize;
                trio.check_range(around.saturating_sub(24), around + 24, &format!("{op}@{o} at {addr:#x}"))?;
            }
        }
    }
    Ok(())
}

fn record(out: Outcome, counts: &mut Counts) {
    counts.calls += 1;
    *counts.outcomes.entry(out.kind().to_string()).or_default() += 1;
}

/// One edge module: grown first if `grow`, the bytes around each end
/// filled, then every probe; the whole memory compared at the end.
fn run_edges(
    engine: &wasmi::Engine,
    wasm: &[u8],
    pages: u32,
    grow: u32,
    counts: &mut Counts,
) -> Result<(), Divergence> {
    let (trio, outcome) = Trio::new(engine, wasm, LIMITS)?;
    let mut trio = trio.ok_or_else(|| Divergence(format!("not instantiated: {outcome:?}")))?;
    trio.full_checks(false);
    let mut ends = vec![pages * 65536];
    if grow > 0 {
        let out = trio.call("grow", &[Value::I32(grow)])?;
        if out == Outcome::Values(vec![Value::I32(pages)]) {
            ends.push((pages + grow) * 65536);
        }
    }
    for &end in &ends {
        let from = end.saturating_sub(64);
        // The first traps at the end, after the bytes before it are written.
        record(trio.call("fill", &[Value::I32(from), Value::I32(end + 64)])?, counts);
        record(trio.call("fill", &[Value::I32(from), Value::I32(end)])?, counts);
    }
    trio.check_range(0, usize::MAX, "filling")?;
    for &end in &ends {
        probe_end(&mut trio, end, counts)?;
    }
    trio.check_range(0, usize::MAX, "the probes")
}

#[test]
fn memory_ends_agree_with_wasmi() {
    // (limits, pages to grow by first)
    let cases = [("0", 0), ("1", 0), ("2 2", 0), ("0 1", 1), ("1 3", 1), ("1", 2), ("1 1", 1)];
    let engine = wasmi_engine();
    let mut counts = Counts::default();
    for (limits, grow) in cases {
        let text = edge_module(limits);
        let wasm = wat::parse_str(&text).unwrap_or_else(|e| panic!("the edge module: {e}"));
        let pages: u32 = limits.split(' ').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        counts.modules += 1;
        if let Err(d) = run_edges(&engine, &wasm, pages, grow, &mut counts) {
            fail(&format!("edges-{}-grow-{grow}", limits.replace(' ', "-")), &wasm, &d);
        }
    }
    counts.report("memory ends");
    assert_eq!(counts.modules, 7);
    assert!(counts.outcomes.get("ok").copied().unwrap_or(0) > 1000, "{:?}", counts.outcomes);
    assert!(counts.outcomes.get("out of bounds memory access").copied().unwrap_or(0) > 1000, "{:?}", counts.outcomes);
}
