//! Runs `.wast` scripts (the WebAssembly test suite's format) on a
//! [`Store`]: modules, invocations and every kind of assertion.
//!
//! Each module gets a store of its own, unless it is registered for others
//! to import or imports from a registered module: those share one store,
//! so that linking works and unrelated modules do not fill it.

use std::collections::{HashMap, HashSet};
use std::fmt;

use wast::core::{NanPattern, WastArgCore, WastRetCore};
use wast::parser::{self, ParseBuffer};
use wast::{QuoteWat, Wast, WastArg, WastDirective, WastExecute, WastInvoke, WastRet};

use super::module;
use super::store::{InstanceId, Store, StoreError};
use super::value::Value;
use crate::run::Engine;

/// Most instructions one invocation of a script may retire.
pub const SCRIPT_FUEL: u64 = 2_000_000_000;

/// Errors reading a script.
#[derive(Debug, thiserror::Error)]
pub enum WastError {
    #[error("{name}: not a .wast script: {message}")]
    Parse { name: String, message: String },
}

/// One failed directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub line: usize,
    pub message: String,
}

/// What a script did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub name: String,
    pub passed: u64,
    pub failures: Vec<Failure>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} passed, {} failed", self.name, self.passed, self.failures.len())?;
        for x in &self.failures {
            write!(f, "\n  {}:{}: {}", self.name, x.line, x.message)?;
        }
        Ok(())
    }
}

/// Which store a module lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Home {
    Shared,
    Private(usize),
}

/// The state of one script's run.
struct Runner {
    engine: Engine,
    jit_threshold: u32,
    features: wasmparser::WasmFeatures,
    shared: Option<Store>,
    private: Vec<Option<Store>>,
    current: Option<(Home, InstanceId)>,
    named: HashMap<String, (Home, InstanceId)>,
    /// Modules that are registered: `$id`s, and `#n` for the unnamed one
    /// of directive n.
    registered: HashSet<String>,
    /// The directive being run.
    pos: usize,
}

/// Runs the script `text` (named `name` in messages) on `engine`.
///
/// # Errors
///
/// A script that does not parse.
pub fn run_script(name: &str, text: &str, engine: Engine) -> Result<Report, WastError> {
    run_script_tiered(name, text, engine, crate::jit::DEFAULT_THRESHOLD)
}

/// [`run_script`], the translator translating a block at its
/// `jit_threshold`-th entry (see `Store::set_jit_threshold`).
///
/// # Errors
///
/// A script that does not parse.
pub fn run_script_tiered(name: &str, text: &str, engine: Engine, jit_threshold: u32) -> Result<Report, WastError> {
    let perr = |e: wast::Error| WastError::Parse { name: name.to_string(), message: e.to_string() };
    // The suite's names.wast exports names with bidirectional controls.
    let mut lexer = wast::lexer::Lexer::new(text);
    lexer.allow_confusing_unicode(true);
    let buf = ParseBuffer::new_with_lexer(lexer).map_err(perr)?;
    let script: Wast<'_> = parser::parse(&buf).map_err(perr)?;
    let mut r = Runner {
        engine,
        jit_threshold,
        features: module::WASM1,
        shared: None,
        private: Vec::new(),
        current: None,
        named: HashMap::new(),
        registered: registered_modules(&script.directives),
        pos: 0,
    };
    let mut report = Report { name: name.to_string(), ..Report::default() };
    for (i, d) in script.directives.into_iter().enumerate() {
        r.pos = i;
        let line = d.span().linecol_in(text).0 + 1;
        match r.directive(d) {
            Ok(()) => report.passed += 1,
            Err(message) => report.failures.push(Failure { line, message }),
        }
    }
    Ok(report)
}

/// The `$ids` of modules that a `register` names, and the positions of
/// unnamed ones (as `#n`).
fn registered_modules(ds: &[WastDirective<'_>]) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut last = None;
    for (i, d) in ds.iter().enumerate() {
        match d {
            WastDirective::Module(q) => {
                last = Some(q.name().map_or_else(|| format!("#{i}"), |id| id.name().to_string()))
            }
            WastDirective::Register { module: Some(id), .. } => {
                out.insert(id.name().to_string());
            }
            WastDirective::Register { module: None, .. } => {
                out.extend(last.clone());
            }
            _ => {}
        }
    }
    out
}

/// True if the module imports from a module other than `spectest` (only
/// its import section is read: the store decodes and validates it all).
fn imports_from_others(bytes: &[u8]) -> bool {
    wasmparser::Parser::new(0).parse_all(bytes).map_while(Result::ok).any(|p| match p {
        wasmparser::Payload::ImportSection(r) => {
            r.into_imports_with_offsets().map_while(Result::ok).any(|(_, i)| i.module != "spectest")
        }
        _ => false,
    })
}

fn encode(q: &mut QuoteWat<'_>) -> Result<Vec<u8>, String> {
    q.encode().map_err(|e| format!("the script's module does not encode: {e}"))
}

impl Runner {
    fn store(&mut self, home: Home) -> Result<&mut Store, String> {
        let slot = match home {
            Home::Shared => &mut self.shared,
            Home::Private(i) => &mut self.private[i],
        };
        if slot.is_none() {
            let mut s = Store::new(self.engine, self.features).map_err(|e| chain(&e))?;
            s.set_fuel(SCRIPT_FUEL);
            s.set_jit_threshold(self.jit_threshold);
            *slot = Some(s);
        }
        slot.as_mut().ok_or_else(|| "no store".to_string())
    }

    /// Where a module goes: the shared store if it is registered or
    /// imports from a registered module.
    fn home_for(&mut self, key: &str, bytes: &[u8]) -> Home {
        if self.registered.contains(key) || imports_from_others(bytes) {
            return Home::Shared;
        }
        // The previous unnamed private store is unreachable from now on.
        if let Some((Home::Private(i), _)) = self.current {
            if !self.named.values().any(|&(h, _)| h == Home::Private(i)) {
                self.private[i] = None;
            }
        }
        self.private.push(None);
        Home::Private(self.private.len() - 1)
    }

    fn instantiate(&mut self, key: &str, bytes: &[u8]) -> Result<(Home, InstanceId), StoreError> {
        let home = self.home_for(key, bytes);
        let store = self.store(home).map_err(|_| StoreError::Full("a store"))?;
        let id = store.instantiate(bytes)?;
        Ok((home, id))
    }

    fn target(&self, module: Option<wast::token::Id<'_>>) -> Result<(Home, InstanceId), String> {
        match module {
            Some(id) => self.named.get(id.name()).copied().ok_or_else(|| format!("no module named ${}", id.name())),
            None => self.current.ok_or_else(|| "no module instantiated yet".to_string()),
        }
    }

    fn invoke(&mut self, inv: &WastInvoke<'_>) -> Result<Result<Vec<Value>, StoreError>, String> {
        let args = inv.args.iter().map(arg).collect::<Result<Vec<_>, _>>()?;
        let (home, id) = self.target(inv.module)?;
        let store = self.store(home)?;
        Ok(store.invoke(id, inv.name, &args))
    }

    fn execute(&mut self, exec: WastExecute<'_>) -> Result<Result<Vec<Value>, StoreError>, String> {
        match exec {
            WastExecute::Invoke(inv) => self.invoke(&inv),
            WastExecute::Wat(mut w) => {
                let bytes = w.encode().map_err(|e| format!("the script's module does not encode: {e}"))?;
                Ok(self.instantiate("#assert", &bytes).map(|_| Vec::new()))
            }
            WastExecute::Get { module, global, .. } => {
                let (home, id) = self.target(module)?;
                let store = self.store(home)?;
                Ok(store.global(id, global).map(|v| vec![v]))
            }
        }
    }

    fn directive(&mut self, d: WastDirective<'_>) -> Result<(), String> {
        let index_key =
            |q: &QuoteWat<'_>, i: usize| q.name().map_or_else(|| format!("#{i}"), |id| id.name().to_string());
        match d {
            WastDirective::Module(mut q) => {
                let key = index_key(&q, self.pos);
                let bytes = encode(&mut q)?;
                let at = self.instantiate(&key, &bytes).map_err(|e| format!("module: {}", chain(&e)))?;
                self.current = Some(at);
                if let Some(id) = q.name() {
                    self.named.insert(id.name().to_string(), at);
                }
                Ok(())
            }
            WastDirective::Register { name, module, .. } => {
                let (home, id) = self.target(module)?;
                if home != Home::Shared {
                    return Err(format!("register {name}: the module was not put in the shared store (a runner bug)"));
                }
                self.store(home)?.register(name, id);
                Ok(())
            }
            WastDirective::Invoke(inv) => self.invoke(&inv)?.map(drop).map_err(|e| chain(&e)),
            WastDirective::AssertReturn { exec, results, .. } => {
                let got = self.execute(exec)?.map_err(|e| chain(&e))?;
                check_results(&got, &results)
            }
            WastDirective::AssertTrap { exec, message, .. } => expect_trap(self.execute(exec)?, message),
            WastDirective::AssertExhaustion { call, message, .. } => expect_trap(self.invoke(&call)?, message),
            WastDirective::AssertMalformed { mut module, message, .. }
            | WastDirective::AssertInvalid { mut module, message, .. } => {
                let Ok(bytes) = module.encode() else {
                    return Ok(()); // malformed text: the text parser refused it
                };
                match module::parse(&bytes, self.features) {
                    Ok(_) => Err(format!("a module that should be refused ({message}) was accepted")),
                    Err(_) => Ok(()),
                }
            }
            WastDirective::AssertUnlinkable { mut module, message, .. } => {
                let bytes = module.encode().map_err(|e| format!("the script's module does not encode: {e}"))?;
                match self.instantiate("#unlinkable", &bytes) {
                    Err(StoreError::Link(_)) => Ok(()),
                    Err(e) => Err(format!("expected a link error ({message}), got: {}", chain(&e))),
                    Ok(_) => Err(format!("a module that should not link ({message}) was instantiated")),
                }
            }
            other => Err(format!("a directive outside WebAssembly 1.0: {other:?}").chars().take(120).collect()),
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn arg(a: &WastArg<'_>) -> Result<Value, String> {
    match a {
        WastArg::Core(WastArgCore::I32(v)) => Ok(Value::I32(*v as u32)),
        WastArg::Core(WastArgCore::I64(v)) => Ok(Value::I64(*v as u64)),
        WastArg::Core(WastArgCore::F32(v)) => Ok(Value::F32(v.bits)),
        WastArg::Core(WastArgCore::F64(v)) => Ok(Value::F64(v.bits)),
        other => Err(format!("an argument outside WebAssembly 1.0: {other:?}")),
    }
}

fn expect_trap(got: Result<Vec<Value>, StoreError>, message: &str) -> Result<(), String> {
    match got {
        Err(e) => match e.trap_message() {
            Some(m) if m.starts_with(message) || message.starts_with(m) => Ok(()),
            Some(m) => Err(format!("expected the trap \"{message}\", got \"{m}\"")),
            None => Err(format!("expected the trap \"{message}\", got: {}", chain(&e))),
        },
        Ok(v) => Err(format!("expected the trap \"{message}\", got {v:?}")),
    }
}

fn check_results(got: &[Value], want: &[WastRet<'_>]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("expected {} results, got {got:?}", want.len()));
    }
    for (g, w) in got.iter().zip(want) {
        let ok = match (g, w) {
            (Value::I32(g), WastRet::Core(WastRetCore::I32(w))) => *g == *w as u32,
            (Value::I64(g), WastRet::Core(WastRetCore::I64(w))) => *g == *w as u64,
            (Value::F32(g), WastRet::Core(WastRetCore::F32(p))) => match p {
                NanPattern::CanonicalNan => g & 0x7fff_ffff == 0x7fc0_0000,
                NanPattern::ArithmeticNan => g & 0x7fc0_0000 == 0x7fc0_0000,
                NanPattern::Value(w) => *g == w.bits,
            },
            (Value::F64(g), WastRet::Core(WastRetCore::F64(p))) => match p {
                NanPattern::CanonicalNan => g & 0x7fff_ffff_ffff_ffff == 0x7ff8_0000_0000_0000,
                NanPattern::ArithmeticNan => g & 0x7ff8_0000_0000_0000 == 0x7ff8_0000_0000_0000,
                NanPattern::Value(w) => *g == w.bits,
            },
            _ => false,
        };
        if !ok {
            return Err(format!("expected {w:?}, got {g}"));
        }
    }
    Ok(())
}
