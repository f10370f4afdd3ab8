//! What a compiled program and a store share: canonical type ids, the
//! runtime data of an instance (memory descriptors, globals, tables),
//! lowering every function of a module, and checking and applying its
//! segments.

use std::collections::HashMap;

use super::code::{Code, CodeError};
use super::lower::{self, Env, GlobalSlot, LowerError};
use super::module::{Const, FuncType, Module, ValType};

/// Bytes of a memory descriptor: the memory's current end address, its
/// base address.
pub const DESC_SIZE: u64 = 16;
/// Bytes of a table entry: code address u32, type id u32, the memory
/// descriptor of the function's instance u64 (0: none, or the caller's).
pub const ENTRY_SIZE: u64 = 16;
/// Bytes per WebAssembly page.
pub const PAGE: u64 = 65536;
/// Most entries a table may have here.
pub const MAX_TABLE: u64 = 1 << 20;

/// Why a module could not be linked or instantiated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("at byte {offset:#x}: unknown import {module}.{name}{hint}")]
    MissingImport { offset: usize, module: String, name: String, hint: &'static str },
    #[error("at byte {offset:#x}: incompatible import type for {module}.{name}: {why}")]
    Incompatible { offset: usize, module: String, name: String, why: String },
    #[error("a table of {0} elements is more than the front end's limit of {MAX_TABLE}")]
    TableTooLarge(u64),
    #[error("memory of {pages} pages is more than the ceiling of {ceiling} pages (raise it with --wasm-memory)")]
    MemoryTooLarge { pages: u64, ceiling: u64 },
    #[error("{what} segment {index} does not fit (out of bounds {what} access)")]
    SegmentDoesNotFit { what: &'static str, index: usize },
    #[error("the module exports no function _start (a WASI command) and has no start function")]
    NoEntry,
    #[error("the export _start must take and return nothing")]
    BadEntry,
    #[error("the program does not fit in the pvm's address space: {0}")]
    TooLarge(String),
}

/// Errors compiling a module.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error(transparent)]
    Module(#[from] super::module::ModuleError),
    #[error("function {func}")]
    Lower {
        func: u32,
        #[source]
        source: LowerError,
    },
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Code(#[from] CodeError),
}

/// Canonical ids of function types: equal types, equal ids, from 1.
#[derive(Debug, Default)]
pub struct TypeIds(HashMap<FuncType, u32>);

impl TypeIds {
    pub fn id(&mut self, t: &FuncType) -> u32 {
        let next = self.0.len() as u32 + 1;
        *self.0.entry(t.clone()).or_insert(next)
    }

    /// Ids of a module's types.
    pub fn of(&mut self, m: &Module<'_>) -> Vec<u32> {
        m.types.iter().map(|t| self.id(t)).collect()
    }
}

/// Where an instance's runtime data is: the addresses of its memory
/// descriptors, globals and tables (imported ones where their owner put
/// them), and the defined ones' extent.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    pub descs: Vec<u64>,
    pub globals: Vec<u64>,
    /// (address, elements)
    pub tables: Vec<(u64, u64)>,
    pub end: u64,
}

impl Placement {
    /// Places the defined memories', globals' and tables' data from `at`,
    /// after the imported ones (given).
    pub fn new(m: &Module<'_>, at: u64, imported: Placement) -> Result<Placement, LinkError> {
        Placement::place(m, at, imported, true)
    }

    /// As [`Placement::new`]; without `memories`, the descriptors of the
    /// defined memories are already in `imported` (a store allocates them).
    pub fn place(m: &Module<'_>, at: u64, imported: Placement, memories: bool) -> Result<Placement, LinkError> {
        let mut p = imported;
        let mut next = at;
        if memories {
            for _ in m.imported_memories..m.memories.len() {
                p.descs.push(next);
                next += DESC_SIZE;
            }
        }
        for _ in m.imported_globals..m.globals.len() {
            p.globals.push(next);
            next += 8;
        }
        for t in &m.tables[m.imported_tables..] {
            if t.min > MAX_TABLE {
                return Err(LinkError::TableTooLarge(t.min));
            }
            p.tables.push((next, t.min));
            next += ENTRY_SIZE * t.min;
        }
        p.end = next;
        Ok(p)
    }
}

/// The value of a constant expression, given the globals' values.
pub fn eval(c: Const, globals: &[u64], func_addr: impl Fn(u32) -> u64) -> u64 {
    match c {
        Const::Value(_, v) => v,
        Const::Global(g) => globals.get(g as usize).copied().unwrap_or(0),
        Const::Func(Some(f)) => func_addr(f),
        Const::Func(None) => 0,
    }
}

/// Lowers every function of the module into `code`; returns the entry
/// address of each defined function.
pub fn lower_all(env: &Env<'_>, code: &mut Code) -> Result<Vec<u64>, WasmError> {
    let m = env.module;
    let mut entries = Vec::with_capacity(m.bodies.len());
    for i in 0..m.bodies.len() {
        let func = (m.imported_funcs + i) as u32;
        entries.push(lower::lower_function(env, code, func).map_err(|source| WasmError::Lower { func, source })?);
    }
    code.resolve_labels()?;
    Ok(entries)
}

/// Points every direct call at its callee's entry.
pub fn patch_calls(code: &mut Code, m: &Module<'_>, entries: &[u64]) {
    for &(at, f) in &std::mem::take(&mut code.calls) {
        let addr = (f as usize).checked_sub(m.imported_funcs).and_then(|i| entries.get(i)).copied().unwrap_or(0);
        code.patch(at, addr as i32);
    }
}

/// The 16 bytes of a table entry.
pub fn table_entry(code_addr: u64, type_id: u32, desc: u64) -> [u8; 16] {
    let mut e = [0u8; 16];
    e[..4].copy_from_slice(&(code_addr as u32).to_le_bytes());
    e[4..8].copy_from_slice(&type_id.to_le_bytes());
    e[8..].copy_from_slice(&desc.to_le_bytes());
    e
}

/// Every global's value: the imported ones' (`imported`, in order), then
/// each defined one's initial value.
pub fn global_values(m: &Module<'_>, imported: Vec<u64>) -> Vec<u64> {
    let mut values = imported;
    for (i, c) in m.global_inits.iter().enumerate() {
        let ty = m.globals[m.imported_globals + i].ty;
        values.push(global_bits(ty, eval(*c, &values, |_| 0)));
    }
    values
}

/// Where each global is (`addrs`), and for a defined immutable one its
/// value (from `values`), which the code may use as a constant.
pub fn global_slots(m: &Module<'_>, addrs: &[u64], values: &[u64]) -> Vec<GlobalSlot> {
    (0..m.globals.len())
        .map(|g| {
            let defined = g.checked_sub(m.imported_globals).map(|i| m.global_inits[i]);
            let constant = defined.is_some_and(|c| !m.globals[g].mutable && !matches!(c, Const::Func(_)));
            GlobalSlot { addr: addrs[g], constant: constant.then(|| values[g]) }
        })
        .collect()
}

/// The stored bits of a global's value (i32 and f32 zero-extended).
pub fn global_bits(ty: ValType, v: u64) -> u64 {
    match ty {
        ValType::I32 | ValType::F32 => v & 0xffff_ffff,
        ValType::I64 | ValType::F64 => v,
    }
}

/// Checks that every segment fits (elements: table sizes; data: memory
/// sizes in bytes), as WebAssembly 1.0 does before writing any.
pub fn check_segments(
    m: &Module<'_>,
    globals: &[u64],
    table_sizes: &[u64],
    memory_bytes: &[u64],
) -> Result<(), LinkError> {
    for (index, e) in m.elements.iter().enumerate() {
        let at = eval(e.offset, globals, |_| 0) & 0xffff_ffff;
        let size = table_sizes.get(e.table as usize).copied().unwrap_or(0);
        if at + e.funcs.len() as u64 > size {
            return Err(LinkError::SegmentDoesNotFit { what: "elements", index });
        }
    }
    for (index, d) in m.data.iter().enumerate() {
        let at = eval(d.offset, globals, |_| 0) & 0xffff_ffff;
        let size = memory_bytes.get(d.memory as usize).copied().unwrap_or(0);
        if at + d.bytes.len() as u64 > size {
            return Err(LinkError::SegmentDoesNotFit { what: "data", index });
        }
    }
    Ok(())
}
