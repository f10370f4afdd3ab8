//! The WebAssembly front end. The first byte chooses:
//!
//! - even: the rest as a module's bytes, given to `module::parse`,
//!   `wasm::compile` and `Store::instantiate` on both engines (fuel
//!   10 000); checks: no panic, `compile` and instantiation fail where
//!   `parse` does, both engines instantiate alike;
//! - odd: the rest read by `wasm-smith` into a valid module of the
//!   features the front end supports (the test suite's configuration), run
//!   on both pvm engines and on `wasmi` 2.0 by the harness of
//!   `tests/tests/pvm_wasm_oracle.rs` (included by path): every exported
//!   function called with edge arguments; checks: the same results, traps,
//!   exported globals and memory, the pvm's engines the same trap pc and
//!   retired count; comparison stops where a side runs out of fuel or
//!   stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvm::run::Engine;
use pvm::wasm::module::{self, program_features};
use pvm::wasm::store::Store;

#[path = "../../tests/tests/wasm_oracle/mod.rs"]
#[allow(dead_code)]
mod wasm_oracle;

use wasm_oracle::{args, smith_config, wasmi_engine, Limits, Trio, ARG_SETS};

/// Enough fuel for a 2-page memory's digest, little enough for speed.
const LIMITS: Limits = Limits { fuel: 400_000, pages: 2 };

fn raw(bytes: &[u8]) {
    let parsed = module::parse(bytes, program_features()).is_ok();
    if !parsed {
        assert!(
            pvm::wasm::compile(bytes, &pvm::wasm::Options::default()).is_err(),
            "compile accepts what parse refuses"
        );
    }
    let mut outcomes = Vec::new();
    for engine in [Engine::Interp, Engine::Jit] {
        let mut store = Store::new(engine, program_features()).expect("a store");
        store.set_fuel(10_000);
        store.set_max_pages(16);
        let r = store.instantiate(bytes);
        assert!(parsed || r.is_err(), "instantiated what parse refuses");
        outcomes.push(r.map(|_| ()).map_err(|e| e.to_string()));
    }
    assert_eq!(outcomes[0], outcomes[1], "the engines instantiate differently");
}

fn smith(data: &[u8]) {
    let mut u = arbitrary::Unstructured::new(data);
    let Ok(m) = wasm_smith::Module::new(smith_config(LIMITS), &mut u) else { return };
    let wasm = m.to_bytes();
    let engine = wasmi_engine();
    let run = || -> Result<(), wasm_oracle::Divergence> {
        let (Some(mut trio), _) = Trio::new(&engine, &wasm, LIMITS)? else { return Ok(()) };
        for (name, ty) in trio.funcs().to_vec() {
            let sets = if ty.params.is_empty() { 1 } else { ARG_SETS };
            for set in 0..sets {
                if trio.call(&name, &args(&ty.params, set))?.resource_out() {
                    return Ok(());
                }
            }
        }
        Ok(())
    };
    if let Err(d) = run() {
        panic!("the pvm diverges from wasmi: {}\nthe module: {:02x?}", d.0, wasm);
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 0 => raw(rest),
        Some((_, rest)) => smith(rest),
        None => {}
    }
});
