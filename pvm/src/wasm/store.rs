//! A store: many WebAssembly instances in one pvm machine, linked to each
//! other by their imports, their functions called by the embedder (the test
//! suite's runner, the differential tests).
//!
//! ```text
//! 0x1000      the instances' runtime data: memory descriptors, globals,
//!             tables (bump-allocated)
//! CODE_BASE   the return stub, spectest's host stubs, then each
//!             instance's code as it is instantiated (the code section
//!             grows; both engines are set up again after it did)
//! MEMORY_BASE the linear memories, each with its reserve
//! top         the stack, STACK bytes
//! ```
//!
//! An invocation puts the arguments in r0.. (beyond twelve, on the stack),
//! pushes the address of the return stub (`sys return`) and runs the
//! function: its `ret` reaches the stub, the engine hands control back,
//! and the results are in r0...

use std::collections::HashMap;

use super::code::Code;
use super::link::{self, LinkError, Placement, TypeIds, WasmError, DESC_SIZE, ENTRY_SIZE, PAGE};
use super::lower::{Callee, Env, MemorySlot, TableSlot, LIN, VALUE_REGS};
use super::module::{self, ExportKind, FuncType, GlobalType, ImportKind, Limits, Module, ValType};
use super::value::Value;
use crate::image::{Image, Section};
use crate::interp::{InterpStats, Interpreter, Outcome};
use crate::isa::{Opcode, INSTR_SIZE, NUM_REGS, SP};
use crate::jit::{Jit, JitError};
use crate::machine::{sys, Machine, MachineError};
use crate::run::Engine;
use crate::trap::{Trap, TrapKind};

/// Memory of a store's machine, in MiB.
pub const STORE_MEM_MIB: u64 = 2047;
/// Where the runtime data ends.
pub const DATA_END: u64 = 64 << 20;
/// Where code starts and may grow to.
pub const CODE_BASE: u64 = 64 << 20;
pub const CODE_END: u64 = 256 << 20;
/// Where linear memories start.
pub const MEMORY_BASE: u64 = 256 << 20;
/// Bytes of stack.
pub const STACK: u64 = 4 << 20;
/// Default most pages a linear memory may grow to in a store (64 MiB).
pub const DEFAULT_MAX_PAGES: u64 = 1024;
/// Default most instructions one invocation may retire.
pub const DEFAULT_FUEL: u64 = 20_000_000_000;

/// Errors of a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Compile(#[from] WasmError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("cannot set up the store's machine")]
    Machine(#[from] MachineError),
    #[error("cannot set up the translator")]
    Jit(#[from] JitError),
    #[error("the store is full: {0}")]
    Full(&'static str),
    #[error("no export named {0:?}")]
    NoExport(String),
    #[error("the export {0:?} is not a {1}")]
    WrongKind(String, &'static str),
    #[error("{name} takes {want:?}, was given {got:?}")]
    BadArguments { name: String, want: Vec<ValType>, got: Vec<ValType> },
    /// The function trapped: WebAssembly's message, and the pvm's trap.
    #[error("trap: {message} ({trap})")]
    Trap { message: &'static str, trap: Box<Trap> },
    #[error("the program exited with status {0}")]
    Exited(i32),
}

impl StoreError {
    /// The WebAssembly trap message, if this is a trap.
    pub fn trap_message(&self) -> Option<&'static str> {
        match self {
            StoreError::Trap { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// A function of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncRef {
    pub addr: u64,
    pub ty: FuncType,
    pub type_id: u32,
    /// Descriptor of its instance's memory 0.
    pub desc: Option<u64>,
    /// A host function (its stub is at `addr`).
    pub host: Option<u32>,
}

/// A table: `size` entries at `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRef {
    pub addr: u64,
    pub limits: Limits,
}

/// A linear memory: its descriptor and the most pages it may have here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRef {
    pub desc: u64,
    pub declared_max: Option<u64>,
    pub max_pages: u64,
}

/// A global at `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalRef {
    pub addr: u64,
    pub ty: GlobalType,
}

/// What an instance exports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extern {
    Func(FuncRef),
    Table(TableRef),
    Memory(MemoryRef),
    Global(GlobalRef),
}

impl Extern {
    fn kind(&self) -> &'static str {
        match self {
            Extern::Func(_) => "function",
            Extern::Table(_) => "table",
            Extern::Memory(_) => "memory",
            Extern::Global(_) => "global",
        }
    }
}

/// An instance: its exports by name.
#[derive(Clone, Debug, Default)]
pub struct Instance {
    pub exports: HashMap<String, Extern>,
}

/// Index of an instance in its store.
pub type InstanceId = usize;

/// Many instances in one machine.
pub struct Store {
    m: Machine,
    engine: Engine,
    interp: Option<Interpreter>,
    jit: Option<Jit>,
    jit_threshold: u32,
    ids: TypeIds,
    data_next: u64,
    memory_next: u64,
    max_pages: u64,
    fuel: u64,
    instances: Vec<Instance>,
    registry: HashMap<String, InstanceId>,
    pub io: StoreIo,
    features: wasmparser::WasmFeatures,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("engine", &self.engine).field("instances", &self.instances.len()).finish()
    }
}

/// Address of the return stub.
const RETURN_STUB: u64 = CODE_BASE;

impl Store {
    /// A store running on `engine`, validating with `features`, whose
    /// `spectest` instance is registered.
    pub fn new(engine: Engine, features: wasmparser::WasmFeatures) -> Result<Store, StoreError> {
        let mut code = Code::new(CODE_BASE);
        code.emit(Opcode::Sys, 0, 0, 0, sys::RETURN);
        let image = Image::new(CODE_BASE, Section { addr: CODE_BASE, bytes: code.bytes() }, vec![]);
        let mut m = Machine::new(&image, STORE_MEM_MIB)?;
        let top = m.mem.len() as u64;
        m.stack_limit = top - STACK;
        let mut s = Store {
            m,
            engine,
            interp: None,
            jit: None,
            jit_threshold: crate::jit::DEFAULT_THRESHOLD,
            ids: TypeIds::default(),
            data_next: super::image::DATA_BASE,
            memory_next: MEMORY_BASE,
            max_pages: DEFAULT_MAX_PAGES,
            fuel: DEFAULT_FUEL,
            instances: Vec::new(),
            registry: HashMap::new(),
            io: StoreIo::default(),
            features,
        };
        let spectest = s.spectest()?;
        s.registry.insert("spectest".into(), spectest);
        Ok(s)
    }

    /// Sets the most instructions one invocation may retire.
    pub fn set_fuel(&mut self, fuel: u64) {
        self.fuel = fuel;
        self.jit = None;
    }

    /// Sets how many entries make a block hot for the translator (see
    /// `Jit::set_threshold`; 1: translate every block at once).
    pub fn set_jit_threshold(&mut self, threshold: u32) {
        self.jit_threshold = threshold;
        if let Some(jit) = &mut self.jit {
            jit.set_threshold(threshold);
        }
    }

    /// Sets the most pages a memory instantiated from now on may grow to.
    pub fn set_max_pages(&mut self, pages: u64) {
        self.max_pages = pages;
    }

    /// The instance `id`.
    pub fn instance(&self, id: InstanceId) -> &Instance {
        &self.instances[id]
    }

    /// Makes the exports of `id` importable as module `name`.
    pub fn register(&mut self, name: &str, id: InstanceId) {
        self.registry.insert(name.to_string(), id);
    }

    /// Bytes of the runtime data area.
    fn alloc_data(&mut self, bytes: u64) -> Result<u64, StoreError> {
        let at = self.data_next;
        let end = at.checked_add(bytes).filter(|&e| e <= DATA_END).ok_or(StoreError::Full("runtime data"))?;
        self.data_next = end.next_multiple_of(16);
        Ok(at)
    }

    /// A linear memory of `limits`: its descriptor and reserve.
    fn alloc_memory(&mut self, limits: Limits) -> Result<MemoryRef, StoreError> {
        let max_pages = limits.max.unwrap_or(65536).min(self.max_pages);
        if limits.min > max_pages {
            return Err(LinkError::MemoryTooLarge { pages: limits.min, ceiling: max_pages }.into());
        }
        let base = self.memory_next;
        let end = base + max_pages * PAGE;
        if end > self.m.stack_limit {
            return Err(StoreError::Full("linear memories (lower the memories' maxima)"));
        }
        // A page of distance, so that no memory's end is another's start.
        self.memory_next = end + PAGE;
        let desc = self.alloc_data(DESC_SIZE)?;
        self.put(desc, &(base + limits.min * PAGE).to_le_bytes());
        self.put(desc + 8, &base.to_le_bytes());
        Ok(MemoryRef { desc, declared_max: limits.max, max_pages })
    }

    fn put(&mut self, addr: u64, bytes: &[u8]) {
        self.m.mem[addr as usize..addr as usize + bytes.len()].copy_from_slice(bytes);
    }

    fn get64(&self, addr: u64) -> u64 {
        self.m.load::<8>(addr).unwrap_or(0)
    }

    /// Appends `code` (built at the current code end) to the code section.
    fn append_code(&mut self, code: &Code) -> Result<(), StoreError> {
        let bytes = code.bytes();
        let end = code.base + bytes.len() as u64;
        if code.base != self.m.code_end || end > CODE_END {
            return Err(StoreError::Full("code"));
        }
        self.put(code.base, &bytes);
        self.m.code_end = end;
        self.interp = None;
        self.jit = None;
        Ok(())
    }

    /// What import `module.name` resolves to.
    fn resolve(&self, offset: usize, module: &str, name: &str) -> Result<Extern, LinkError> {
        let unknown =
            || LinkError::MissingImport { offset, module: module.to_string(), name: name.to_string(), hint: "" };
        let id = *self.registry.get(module).ok_or_else(unknown)?;
        self.instances[id].exports.get(name).cloned().ok_or_else(unknown)
    }

    /// Instantiates a module: imports resolved against the registered
    /// instances, every segment checked before any is written (1.0), then
    /// the segments written and the start function run.
    ///
    /// # Errors
    ///
    /// A malformed, invalid or unsupported module; an unknown or
    /// incompatible import; a segment that does not fit; a trap of the
    /// start function (its segments stay written, as the spec says).
    pub fn instantiate(&mut self, bytes: &[u8]) -> Result<InstanceId, StoreError> {
        let m = module::parse(bytes, self.features).map_err(WasmError::from)?;
        let imports = self.link_imports(&m)?;
        let built = self.build(&m, imports)?;
        let id = self.instances.len();
        self.instances.push(Instance { exports: built.exports });
        if let Some(start) = built.start {
            self.call(&start, &[])?;
        }
        Ok(id)
    }
}

/// What a module's imports resolved to.
#[derive(Default)]
struct Imports {
    funcs: Vec<FuncRef>,
    tables: Vec<TableRef>,
    memories: Vec<MemoryRef>,
    globals: Vec<GlobalRef>,
}

/// An instance, built.
struct Built {
    exports: HashMap<String, Extern>,
    start: Option<FuncRef>,
}

impl Store {
    fn link_imports(&self, m: &Module<'_>) -> Result<Imports, StoreError> {
        let mut out = Imports::default();
        for imp in &m.imports {
            let got = self.resolve(imp.offset, &imp.module, &imp.name)?;
            let bad = |why: String| LinkError::Incompatible {
                offset: imp.offset,
                module: imp.module.clone(),
                name: imp.name.clone(),
                why,
            };
            match (&imp.kind, got) {
                (ImportKind::Func(t), Extern::Func(f)) => {
                    let want = &m.types[*t as usize];
                    if *want != f.ty {
                        return Err(bad(format!("a function {want:?} was expected, it is {:?}", f.ty)).into());
                    }
                    out.funcs.push(f);
                }
                (ImportKind::Table(want), Extern::Table(t)) => {
                    if !want.accepts(&t.limits) {
                        return Err(bad(format!("a table of {want:?} was expected, it has {:?}", t.limits)).into());
                    }
                    out.tables.push(t);
                }
                (ImportKind::Memory(want), Extern::Memory(mem)) => {
                    let pages = (self.get64(mem.desc) - self.get64(mem.desc + 8)) / PAGE;
                    let actual = Limits { min: pages, max: mem.declared_max };
                    if !want.accepts(&actual) {
                        return Err(bad(format!("a memory of {want:?} was expected, it has {actual:?}")).into());
                    }
                    out.memories.push(mem);
                }
                (ImportKind::Global(want), Extern::Global(g)) => {
                    if *want != g.ty {
                        return Err(bad(format!("a global {want:?} was expected, it is {:?}", g.ty)).into());
                    }
                    out.globals.push(g);
                }
                (_, got) => return Err(bad(format!("it is a {}", got.kind())).into()),
            }
        }
        Ok(out)
    }

    /// Places, lowers and writes an instance.
    fn build(&mut self, m: &Module<'_>, imports: Imports) -> Result<Built, StoreError> {
        let type_ids = self.ids.of(m);
        let mut memories = imports.memories.clone();
        for l in &m.memories[m.imported_memories..] {
            memories.push(self.alloc_memory(*l)?);
        }
        let imported = Placement {
            descs: memories.iter().map(|r| r.desc).collect(),
            globals: imports.globals.iter().map(|g| g.addr).collect(),
            tables: imports.tables.iter().map(|t| (t.addr, t.limits.min)).collect(),
            end: 0,
        };
        // Memories were allocated above: place only globals and tables.
        let start = self.data_next;
        let p = Placement::place(m, start, imported, false)?;
        self.alloc_data(p.end - start)?;
        let values = link::global_values(m, imports.globals.iter().map(|g| self.get64(g.addr)).collect());
        let own_desc = memories.first().map(|r| r.desc);
        let mut funcs: Vec<Callee> = imports
            .funcs
            .iter()
            .map(|f| match f.host {
                Some(n) => Callee::Host(n),
                None => Callee::Foreign { addr: f.addr, desc: f.desc },
            })
            .collect();
        funcs.resize(m.funcs.len(), Callee::Local);
        let globals = link::global_slots(m, &p.globals, &values);
        let env = Env {
            module: m,
            type_ids: type_ids.clone(),
            funcs,
            globals,
            memories: memories.iter().map(|r| MemorySlot { desc: r.desc, max_pages: r.max_pages }).collect(),
            tables: p.tables.iter().map(|&(addr, size)| TableSlot { addr, size }).collect(),
            cross_instance: true,
        };
        let mut code = Code::new(self.m.code_end);
        let entries = link::lower_all(&env, &mut code)?;
        link::patch_calls(&mut code, m, &entries);
        let bases: Vec<u64> = memories.iter().map(|r| self.get64(r.desc + 8)).collect();
        code.relocate(|mem| bases.get(mem as usize).copied().unwrap_or(0), self.m.stack_limit);
        // Every segment must fit before any is written.
        let sizes: Vec<u64> = memories.iter().map(|r| self.get64(r.desc) - self.get64(r.desc + 8)).collect();
        let table_sizes: Vec<u64> = p.tables.iter().map(|t| t.1).collect();
        link::check_segments(m, &values, &table_sizes, &sizes)?;
        self.append_code(&code)?;
        for (g, &addr) in p.globals.iter().enumerate().skip(m.imported_globals) {
            self.put(addr, &values[g].to_le_bytes());
        }
        let func = |f: u32| -> FuncRef {
            let ty = m.func_type(f).clone();
            match (f as usize).checked_sub(m.imported_funcs) {
                None => imports.funcs[f as usize].clone(),
                Some(i) => FuncRef {
                    addr: entries[i],
                    ty,
                    type_id: type_ids[m.funcs[f as usize] as usize],
                    desc: own_desc,
                    host: None,
                },
            }
        };
        self.write_segments(m, &p, &values, &bases, &func);
        let mut exports = HashMap::new();
        for (name, kind, index) in &m.exports {
            let i = *index as usize;
            let e = match kind {
                ExportKind::Func => Extern::Func(func(*index)),
                ExportKind::Table => {
                    let limits = m.tables[i];
                    let (addr, size) = p.tables[i];
                    Extern::Table(TableRef { addr, limits: Limits { min: size, max: limits.max } })
                }
                ExportKind::Memory => Extern::Memory(memories[i]),
                ExportKind::Global => Extern::Global(GlobalRef { addr: p.globals[i], ty: m.globals[i] }),
            };
            exports.insert(name.clone(), e);
        }
        Ok(Built { exports, start: m.start.map(func) })
    }

    /// Writes the element and data segments (every one was checked to fit).
    fn write_segments(
        &mut self,
        m: &Module<'_>,
        p: &Placement,
        values: &[u64],
        bases: &[u64],
        func: &dyn Fn(u32) -> FuncRef,
    ) {
        for e in &m.elements {
            let (base, _) = p.tables[e.table as usize];
            let at = link::eval(e.offset, values, |_| 0) & 0xffff_ffff;
            for (k, f) in e.funcs.iter().enumerate() {
                let entry = f.map_or([0; 16], |f| {
                    let r = func(f);
                    link::table_entry(r.addr, r.type_id, r.desc.unwrap_or(0))
                });
                self.put(base + (at + k as u64) * ENTRY_SIZE, &entry);
            }
        }
        for d in &m.data {
            let at = link::eval(d.offset, values, |_| 0) & 0xffff_ffff;
            self.put(bases[d.memory as usize] + at, d.bytes);
        }
    }
}

impl Store {
    /// The export `name` of instance `id`.
    pub fn export(&self, id: InstanceId, name: &str) -> Result<&Extern, StoreError> {
        self.instances[id].exports.get(name).ok_or_else(|| StoreError::NoExport(name.to_string()))
    }

    /// The value of the exported global `name`.
    pub fn global(&self, id: InstanceId, name: &str) -> Result<Value, StoreError> {
        match self.export(id, name)? {
            Extern::Global(g) => Ok(Value::from_bits(g.ty.ty, self.get64(g.addr))),
            _ => Err(StoreError::WrongKind(name.to_string(), "global")),
        }
    }

    /// Calls the exported function `name` of instance `id`.
    ///
    /// # Errors
    ///
    /// No such function, arguments of the wrong types, or a trap.
    pub fn invoke(&mut self, id: InstanceId, name: &str, args: &[Value]) -> Result<Vec<Value>, StoreError> {
        let f = match self.export(id, name)? {
            Extern::Func(f) => f.clone(),
            _ => return Err(StoreError::WrongKind(name.to_string(), "function")),
        };
        let got: Vec<ValType> = args.iter().map(Value::ty).collect();
        if got != f.ty.params {
            return Err(StoreError::BadArguments { name: name.to_string(), want: f.ty.params.clone(), got });
        }
        self.call(&f, args)
    }

    fn call(&mut self, f: &FuncRef, args: &[Value]) -> Result<Vec<Value>, StoreError> {
        let m = &mut self.m;
        m.regs = [0; NUM_REGS];
        m.regs[usize::from(SP)] = m.mem.len() as u64;
        for v in args.iter().skip(VALUE_REGS).rev() {
            m.push(v.bits()).map_err(|_| StoreError::Full("stack"))?;
        }
        for (r, v) in m.regs.iter_mut().zip(args.iter().take(VALUE_REGS)) {
            *r = v.bits();
        }
        if let Some(desc) = f.desc {
            m.regs[usize::from(LIN)] = m.load::<8>(desc).unwrap_or(0);
        }
        m.push(RETURN_STUB).map_err(|_| StoreError::Full("stack"))?;
        m.pc = f.addr;
        m.retired = 0;
        let outcome = self.run()?;
        match outcome {
            Outcome::Returned => {
                Ok(f.ty.results.iter().zip(self.m.regs.iter()).map(|(&t, &r)| Value::from_bits(t, r)).collect())
            }
            Outcome::Trapped(trap) => {
                Err(StoreError::Trap { message: super::trap_message(&trap.kind), trap: Box::new(trap) })
            }
            Outcome::Exited(status) => Err(StoreError::Exited(status)),
            // (compiled WebAssembly has no thread instructions)
            Outcome::ThreadOp => {
                let trap = crate::interp::trap_at(&self.m, TrapKind::NoScheduler, self.m.pc);
                Err(StoreError::Trap { message: super::trap_message(&trap.kind), trap: Box::new(trap) })
            }
        }
    }

    fn run(&mut self) -> Result<Outcome, StoreError> {
        match self.engine {
            Engine::Interp => {
                let interp = self.interp.get_or_insert_with(|| Interpreter::new(&self.m));
                let mut stats = InterpStats::default();
                Ok(interp.run::<false, false>(&mut self.m, &mut self.io, self.fuel, &mut stats, &mut std::io::sink()))
            }
            Engine::Jit => {
                if self.jit.is_none() {
                    let mut jit = Jit::new(&self.m, crate::jit::DEFAULT_CACHE_SIZE, Some(self.fuel))?;
                    jit.set_threshold(self.jit_threshold);
                    self.jit = Some(jit);
                }
                let jit = self.jit.as_mut().ok_or(StoreError::Full("translator"))?;
                Ok(jit.run(&mut self.m, &mut self.io)?)
            }
        }
    }

    /// Instructions in the code section.
    pub fn code_instructions(&self) -> u64 {
        (self.m.code_end - self.m.code_start) / INSTR_SIZE
    }
}

mod spectest;
#[cfg(test)]
mod tests;

pub use spectest::StoreIo;
