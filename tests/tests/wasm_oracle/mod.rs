//! A three-way runner for WebAssembly modules: one pvm store per engine
//! (interpreter, translator) and `wasmi` 2.0, an outside implementation,
//! as the oracle. Every call is made on all three in the same order; the
//! results, the trap (as WebAssembly's message), the exported globals and
//! a digest of the exported memory must agree. The pvm's two engines must
//! agree further: the same trap at the same pc after the same number of
//! retired instructions, the same fuel exhaustion.
//!
//! Resource limits are the implementations' own (the pvm counts its
//! instructions, wasmi its own; their stacks differ in depth): when any
//! side runs out of fuel or stack, the run stops being compared there.
//!
//! Shared by `tests/tests/pvm_wasm_oracle.rs` and the fuzz target
//! `fuzz/fuzz_targets/wasm_frontend.rs` (which includes this file by path).

use pvm::run::Engine;
use pvm::trap::TrapKind;
use pvm::wasm::module::{program_features, FuncType, ValType};
use pvm::wasm::store::{Extern, InstanceId, Store, StoreError};
use pvm::wasm::value::Value;

/// The resources of every side.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most pvm instructions (wasmi: its fuel units) one invocation may
    /// take. Reading the memory takes some 10 per 8 bytes: enough for
    /// `pages` is needed.
    pub fuel: u64,
    /// Most pages a memory may grow to.
    pub pages: u64,
}

/// 3,000,000 instructions, 16 pages.
pub const LIMITS: Limits = Limits { fuel: 3_000_000, pages: 16 };
const PAGE: u32 = 65536;

/// How an instantiation or a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Values(Vec<Value>),
    /// WebAssembly's trap message; `detail` (the pvm's trap, its pc and
    /// retired count) is compared between the pvm engines only.
    Trap {
        message: String,
        detail: String,
    },
    Fuel {
        detail: String,
    },
    /// Not a trap: a module refused, a segment that does not fit, ...
    Error(String),
}

impl Outcome {
    fn stack_exhausted(&self) -> bool {
        matches!(self, Outcome::Trap { message, .. } if message == "call stack exhausted")
    }

    /// Ran out of a resource whose size is the implementation's choice.
    pub fn resource_out(&self) -> bool {
        matches!(self, Outcome::Fuel { .. }) || self.stack_exhausted()
    }

    /// A short name for counting: "ok", the trap message, "fuel", "error".
    pub fn kind(&self) -> &str {
        match self {
            Outcome::Values(_) => "ok",
            Outcome::Trap { message, .. } => message,
            Outcome::Fuel { .. } => "fuel",
            Outcome::Error(_) => "error",
        }
    }
}

/// The pvm and the oracle disagree (or the pvm's engines do).
#[derive(Debug)]
pub struct Divergence(pub String);

fn pvm_outcome(r: Result<Vec<Value>, StoreError>) -> Outcome {
    match r {
        Ok(v) => Outcome::Values(v),
        Err(StoreError::Trap { message, trap }) => {
            let detail = format!("{:?} at pc {:#x}, {} retired", trap.kind, trap.pc, trap.retired);
            if trap.kind == TrapKind::FuelExhausted {
                Outcome::Fuel { detail }
            } else {
                Outcome::Trap { message: message.to_string(), detail }
            }
        }
        Err(e) => Outcome::Error(e.to_string()),
    }
}

fn wasmi_outcome(e: &wasmi::Error) -> Outcome {
    use wasmi::TrapCode as T;
    let message = match e.as_trap_code() {
        None => return Outcome::Error(e.to_string()),
        Some(T::OutOfFuel) => return Outcome::Fuel { detail: String::new() },
        Some(T::UnreachableCodeReached) => "unreachable",
        Some(T::MemoryOutOfBounds) => "out of bounds memory access",
        Some(T::TableOutOfBounds) => "undefined element",
        Some(T::IndirectCallToNull) => "uninitialized element",
        Some(T::IntegerDivisionByZero) => "integer divide by zero",
        Some(T::IntegerOverflow) => "integer overflow",
        Some(T::BadConversionToInteger) => "invalid conversion to integer",
        Some(T::StackOverflow) => "call stack exhausted",
        Some(T::BadSignature) => "indirect call type mismatch",
        Some(other) => return Outcome::Error(format!("wasmi trap {other:?}")),
    };
    Outcome::Trap { message: message.to_string(), detail: String::new() }
}

/// The module that reads a pvm instance's exported memory (imported as
/// `m.<name>`): its size, a digest of a range, one word.
fn digest_module(name: &str) -> Vec<u8> {
    // Names are any UTF-8: every byte as an escape.
    let memory: String = name.bytes().map(|b| format!("\\{b:02x}")).collect();
    let text = format!(
        r#"(module
  (import "m" "{memory}" (memory 0))
  (func (export "pages") (result i32) memory.size)
  (func (export "word") (param i32) (result i64) (i64.load (local.get 0)))
  (func (export "hash") (param $from i32) (param $to i32) (result i64) (local $h i64)
    (local.set $h (i64.const 0xcbf29ce484222325))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $from) (local.get $to)))
        (local.set $h (i64.mul (i64.xor (local.get $h) (i64.load (local.get $from)))
                               (i64.const 0x100000001b3)))
        (local.set $from (i32.add (local.get $from) (i32.const 8)))
        (br $next)))
    (local.get $h)))"#
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("the digest module: {e}"))
}

/// What `digest_module`'s `hash` computes.
fn hash_bytes(bytes: &[u8]) -> u64 {
    bytes.chunks_exact(8).fold(0xcbf2_9ce4_8422_2325, |h, w| {
        let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        (h ^ w).wrapping_mul(0x100_0000_01b3)
    })
}

/// One pvm engine's store with the module instantiated (or refused).
struct PvmSide {
    store: Store,
    id: Option<InstanceId>,
    digest: Option<InstanceId>,
}

impl PvmSide {
    fn new(engine: Engine, jit_threshold: u32, bytes: &[u8], limits: Limits) -> (PvmSide, Outcome) {
        let mut store = Store::new(engine, program_features()).unwrap_or_else(|e| panic!("a store: {e}"));
        store.set_fuel(limits.fuel);
        store.set_jit_threshold(jit_threshold);
        store.set_max_pages(limits.pages);
        let mut side = PvmSide { store, id: None, digest: None };
        let outcome = match side.store.instantiate(bytes) {
            Ok(id) => {
                side.id = Some(id);
                Outcome::Values(vec![])
            }
            Err(e) => pvm_outcome(Err(e)),
        };
        if let (Some(id), Some(name)) = (side.id, side.memory_name()) {
            side.store.register("m", id);
            let d = side.store.instantiate(&digest_module(&name)).unwrap_or_else(|e| panic!("the digest module: {e}"));
            side.digest = Some(d);
        }
        (side, outcome)
    }

    fn memory_name(&self) -> Option<String> {
        let id = self.id?;
        let mut names: Vec<&String> = self
            .store
            .instance(id)
            .exports
            .iter()
            .filter(|(_, e)| matches!(e, Extern::Memory(_)))
            .map(|(n, _)| n)
            .collect();
        names.sort();
        names.first().map(|n| n.to_string())
    }

    fn invoke(&mut self, name: &str, args: &[Value]) -> Outcome {
        match self.id {
            Some(id) => pvm_outcome(self.store.invoke(id, name, args)),
            None => Outcome::Error("not instantiated".into()),
        }
    }

    fn digest_call(&mut self, name: &str, args: &[Value]) -> u64 {
        let Some(d) = self.digest else { return 0 };
        match self.store.invoke(d, name, args) {
            Ok(v) => v.first().map_or(0, Value::bits),
            Err(e) => panic!("the digest module's {name}: {e}"),
        }
    }
}

/// wasmi with the same features, fuel and memory ceiling.
struct WasmiSide {
    store: wasmi::Store<wasmi::StoreLimits>,
    inst: Option<wasmi::Instance>,
    fuel: u64,
}

/// A wasmi engine for the features the pvm's front end has.
pub fn wasmi_engine() -> wasmi::Engine {
    let mut c = wasmi::Config::default();
    c.consume_fuel(true)
        .wasm_mutable_global(true)
        .wasm_sign_extension(true)
        .wasm_saturating_float_to_int(true)
        .wasm_multi_value(true)
        .wasm_multi_memory(false)
        .wasm_bulk_memory(false)
        .wasm_reference_types(false)
        .wasm_tail_call(false)
        .wasm_extended_const(false)
        .wasm_custom_page_sizes(false)
        .wasm_memory64(false)
        .wasm_wide_arithmetic(false);
    wasmi::Engine::new(&c)
}

fn to_wasmi(v: Value) -> wasmi::Val {
    match v {
        Value::I32(x) => wasmi::Val::I32(x as i32),
        Value::I64(x) => wasmi::Val::I64(x as i64),
        Value::F32(x) => wasmi::Val::F32(wasmi::F32::from_bits(x)),
        Value::F64(x) => wasmi::Val::F64(wasmi::F64::from_bits(x)),
    }
}

fn from_wasmi(v: &wasmi::Val) -> Option<Value> {
    Some(match v {
        wasmi::Val::I32(x) => Value::I32(*x as u32),
        wasmi::Val::I64(x) => Value::I64(*x as u64),
        wasmi::Val::F32(x) => Value::F32(x.to_bits()),
        wasmi::Val::F64(x) => Value::F64(x.to_bits()),
        _ => return None,
    })
}

impl WasmiSide {
    fn new(engine: &wasmi::Engine, bytes: &[u8], limits: Limits) -> (WasmiSide, Outcome) {
        let memory = (limits.pages * u64::from(PAGE)) as usize;
        let mut store = wasmi::Store::new(engine, wasmi::StoreLimitsBuilder::new().memory_size(memory).build());
        store.limiter(|l| l);
        let mut side = WasmiSide { store, inst: None, fuel: limits.fuel };
        let module = match wasmi::Module::new(engine, bytes) {
            Ok(m) => m,
            Err(e) => return (side, Outcome::Error(format!("wasmi refuses the module: {e}"))),
        };
        side.refuel();
        let linker = wasmi::Linker::<wasmi::StoreLimits>::new(engine);
        let outcome = match linker.instantiate_and_start(&mut side.store, &module) {
            Ok(i) => {
                side.inst = Some(i);
                Outcome::Values(vec![])
            }
            Err(e) => wasmi_outcome(&e),
        };
        (side, outcome)
    }

    fn refuel(&mut self) {
        self.store.set_fuel(self.fuel).unwrap_or_else(|e| panic!("wasmi fuel: {e}"));
    }

    fn invoke(&mut self, name: &str, args: &[Value], results: usize) -> Outcome {
        let Some(f) = self.inst.and_then(|i| i.get_func(&self.store, name)) else {
            return Outcome::Error(format!("wasmi has no function {name:?}"));
        };
        self.refuel();
        let args: Vec<wasmi::Val> = args.iter().copied().map(to_wasmi).collect();
        let mut out = vec![wasmi::Val::I32(0); results];
        match f.call(&mut self.store, &args, &mut out) {
            Ok(()) => match out.iter().map(from_wasmi).collect::<Option<Vec<Value>>>() {
                Some(v) => Outcome::Values(v),
                None => Outcome::Error("wasmi returned a reference".into()),
            },
            Err(e) => wasmi_outcome(&e),
        }
    }

    fn memory<'a>(&'a self, name: &str) -> Option<&'a [u8]> {
        let m = self.inst?.get_memory(&self.store, name)?;
        Some(m.data(&self.store))
    }

    fn global(&self, name: &str) -> Option<Value> {
        from_wasmi(&self.inst?.get_global(&self.store, name)?.get(&self.store))
    }
}

/// One module on the three sides (the translator's several times: every
/// block translated at once, and interpreted blocks mixed in, see
/// `tests::diff::thresholds`).
pub struct Trio {
    interp: PvmSide,
    /// The translator's sides, by threshold, threshold 1 first.
    jits: Vec<(u32, PvmSide)>,
    wasmi: WasmiSide,
    memory: Option<String>,
    globals: Vec<String>,
    funcs: Vec<(String, FuncType)>,
    full_checks: bool,
}

impl std::fmt::Debug for Trio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trio").field("memory", &self.memory).field("funcs", &self.funcs.len()).finish()
    }
}

/// Same outcome for the pvm and the oracle: the same values, or the same
/// trap message; errors are compared by kind only.
fn same_as_oracle(pvm: &Outcome, oracle: &Outcome) -> bool {
    match (pvm, oracle) {
        (Outcome::Values(a), Outcome::Values(b)) => a == b,
        (Outcome::Trap { message: a, .. }, Outcome::Trap { message: b, .. }) => a == b,
        (Outcome::Error(_), Outcome::Error(_)) => true,
        _ => false,
    }
}

impl Trio {
    /// Instantiates `bytes` on the three sides. `Ok(None)`: all refused
    /// it or trapped alike (the outcome says how); a divergence otherwise.
    pub fn new(engine: &wasmi::Engine, bytes: &[u8], limits: Limits) -> Result<(Option<Trio>, Outcome), Divergence> {
        let (interp, a) = PvmSide::new(Engine::Interp, 1, bytes, limits);
        let mut jits = Vec::new();
        for t in tests::diff::thresholds() {
            let (jit, b) = PvmSide::new(Engine::Jit, t, bytes, limits);
            if a != b {
                return Err(Divergence(format!("instantiation: interp {a:?}, jit (threshold {t}) {b:?}")));
            }
            jits.push((t, jit));
        }
        let (wasmi, c) = WasmiSide::new(engine, bytes, limits);
        // A segment that does not fit is a link error here, a trap (or an
        // error) in wasmi.
        let segment = match (&a, &c) {
            (Outcome::Error(e), Outcome::Trap { message, .. }) => {
                e.contains("segment")
                    && ["out of bounds memory access", "undefined element"].contains(&message.as_str())
            }
            _ => false,
        };
        let agree = same_as_oracle(&a, &c) || segment || a.resource_out() || c.resource_out();
        if !agree {
            return Err(Divergence(format!("instantiation: pvm {a:?}, wasmi {c:?}")));
        }
        let Some(id) = interp.id.filter(|_| wasmi.inst.is_some()) else { return Ok((None, a)) };
        let exports = &interp.store.instance(id).exports;
        let mut funcs: Vec<(String, FuncType)> = exports
            .iter()
            .filter_map(|(n, e)| match e {
                Extern::Func(f) => Some((n.clone(), f.ty.clone())),
                _ => None,
            })
            .collect();
        funcs.sort_by(|x, y| x.0.cmp(&y.0));
        let mut globals: Vec<String> =
            exports.iter().filter(|(_, e)| matches!(e, Extern::Global(_))).map(|(n, _)| n.clone()).collect();
        globals.sort();
        let memory = interp.memory_name();
        let mut trio = Trio { interp, jits, wasmi, memory, globals, funcs, full_checks: true };
        trio.check_state(None)?;
        Ok((Some(trio), a))
    }

    /// Whether every call is followed by a comparison of all exported
    /// globals and the whole memory (the default), or not (the caller
    /// checks what it changed with `check_range`).
    pub fn full_checks(&mut self, on: bool) {
        self.full_checks = on;
    }

    /// The exported functions, by name, with their types.
    pub fn funcs(&self) -> &[(String, FuncType)] {
        &self.funcs
    }

    /// Calls `name` on the three sides and compares what they return and
    /// the state after. The outcome is the pvm's; `resource_out()` on it
    /// means some side ran out of fuel or stack: compare no further.
    pub fn call(&mut self, name: &str, args: &[Value]) -> Result<Outcome, Divergence> {
        let results = self.funcs.iter().find(|f| f.0 == name).map_or(0, |f| f.1.results.len());
        let a = self.interp.invoke(name, args);
        let what = || format!("{name}({})", args.iter().map(Value::to_string).collect::<Vec<_>>().join(", "));
        for (t, jit) in &mut self.jits {
            let b = jit.invoke(name, args);
            if a != b {
                return Err(Divergence(format!("{}: interp {a:?}, jit (threshold {t}) {b:?}", what())));
            }
        }
        let c = self.wasmi.invoke(name, args, results);
        if a.resource_out() || c.resource_out() {
            return Ok(if a.resource_out() { a } else { Outcome::Fuel { detail: format!("wasmi: {c:?}") } });
        }
        if !same_as_oracle(&a, &c) {
            return Err(Divergence(format!("{}: pvm {a:?}, wasmi {c:?}", what())));
        }
        if self.full_checks {
            self.check_state(Some(&what()))?;
        }
        Ok(a)
    }

    /// The exported globals and memory agree on the three sides.
    fn check_state(&mut self, after: Option<&str>) -> Result<(), Divergence> {
        let after = after.map_or("after instantiation".to_string(), |w| format!("after {w}"));
        let id = self.interp.id.unwrap_or(0);
        for g in &self.globals {
            let a = self.interp.store.global(id, g).ok();
            let c = self.wasmi.global(g);
            for (t, jit) in &self.jits {
                let b = jit.store.global(id, g).ok();
                if a != b || a != c {
                    return Err(Divergence(format!(
                        "global {g:?} {after}: interp {a:?}, jit (threshold {t}) {b:?}, wasmi {c:?}"
                    )));
                }
            }
        }
        self.check_range(0, usize::MAX, &after)
    }

    /// The exported memory's bytes `[from, to)` (multiples of 8, clipped
    /// to the memory) agree and so do the sizes; a difference is located
    /// to its first word.
    pub fn check_range(&mut self, from: usize, to: usize, after: &str) -> Result<(), Divergence> {
        let Some(m) = &self.memory else { return Ok(()) };
        let Some(mem) = self.wasmi.memory(m) else {
            return Err(Divergence(format!("wasmi has no memory {m:?}")));
        };
        let len = mem.len();
        let (from, to) = (from.min(len), to.min(len));
        let data = mem[from..to].to_vec();
        let jits = self.jits.iter_mut().map(|(t, side)| (format!("jit (threshold {t})"), side));
        for (engine, side) in std::iter::once(("interp".to_string(), &mut self.interp)).chain(jits) {
            let pages = side.digest_call("pages", &[]);
            if pages * u64::from(PAGE) != len as u64 {
                return Err(Divergence(format!(
                    "memory size {after}: {pages} pages on {engine}, {} on wasmi",
                    len / PAGE as usize
                )));
            }
            if let Some((at, got)) = first_difference(side, from, &data) {
                let want = u64::from_le_bytes(data[at - from..at - from + 8].try_into().unwrap_or([0; 8]));
                return Err(Divergence(format!(
                    "memory {after}: the word at {at:#x} is {got:#018x} on {engine}, {want:#018x} on wasmi"
                )));
            }
        }
        Ok(())
    }
}

/// The first word where the pvm's memory from `from` differs from `data`
/// (address, the pvm's word), by bisection on digests.
fn first_difference(side: &mut PvmSide, from: usize, data: &[u8]) -> Option<(usize, u64)> {
    let mut hash = |a: usize, b: usize| side.digest_call("hash", &[Value::I32(a as u32), Value::I32(b as u32)]);
    let (mut lo, mut hi) = (from, from + data.len());
    if hash(lo, hi) == hash_bytes(data) {
        return None;
    }
    while hi - lo > 8 {
        let mid = lo + (hi - lo) / 16 * 8;
        if hash(lo, mid) != hash_bytes(&data[lo - from..mid - from]) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some((lo, side.digest_call("word", &[Value::I32(lo as u32)])))
}

/// wasm-smith limited to what the front end supports, memories declared
/// within `limits`, no imports, everything exported, NaNs canonical.
pub fn smith_config(limits: Limits) -> wasm_smith::Config {
    wasm_smith::Config {
        max_imports: 0,
        max_memories: 1,
        max_tables: 1,
        max_memory32_bytes: limits.pages.min(4) * u64::from(PAGE),
        max_table_elements: 64,
        max_funcs: 24,
        max_data_segments: 8,
        max_element_segments: 8,
        min_funcs: 8,
        min_globals: 2,
        export_everything: true,
        canonicalize_nans: true,
        multi_value_enabled: true,
        sign_extension_ops_enabled: true,
        saturating_float_to_int_enabled: true,
        bulk_memory_enabled: false,
        reference_types_enabled: false,
        simd_enabled: false,
        relaxed_simd_enabled: false,
        exceptions_enabled: false,
        threads_enabled: false,
        tail_call_enabled: false,
        gc_enabled: false,
        memory64_enabled: false,
        extended_const_enabled: false,
        wide_arithmetic_enabled: false,
        custom_page_sizes_enabled: false,
        compact_imports_enabled: false,
        ..wasm_smith::Config::default()
    }
}

/// Arguments of `params` from a set of edge values (`set` 0..ARG_SETS).
pub fn args(params: &[ValType], set: usize) -> Vec<Value> {
    params
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let k = (set + i * usize::from(set > 0)) % ARG_SETS;
            match t {
                ValType::I32 => Value::I32([0, 1, 0x8000_0000, u32::MAX, 65536][k]),
                ValType::I64 => Value::I64([0, 1, 1 << 63, u64::MAX, 0xffff_fff8][k]),
                ValType::F32 => Value::F32([0, 1f32.to_bits(), 0x8000_0000, f32::INFINITY.to_bits(), 0x7fc0_0000][k]),
                ValType::F64 => {
                    Value::F64([0, 1f64.to_bits(), 1 << 63, f64::INFINITY.to_bits(), 0x7ff8_0000_0000_0000][k])
                }
            }
        })
        .collect()
}

/// How many argument sets `args` has.
pub const ARG_SETS: usize = 5;
