//! A WebAssembly command (a module exporting `_start`, importing only
//! WASI) compiled into one pvm image: instantiated ahead of time, so both
//! engines run it as they run any program.
//!
//! ```text
//! 0x1000        memory descriptor, globals, tables (a data section)
//! code          entry stub, host stubs, the functions
//! L (64 KiB)    the linear memory: a reserved range up to its maximum,
//!               the data segments as data sections inside it
//! L + R         the stack (sp starts at the top), WASM_STACK bytes
//! ```

use std::time::{Duration, Instant};

use wasmparser::WasmFeatures;

use super::code::Code;
use super::host::{self, HostSet};
use super::link::{self, LinkError, Placement, TypeIds, WasmError, PAGE};
use super::lower::{Callee, Env, MemorySlot, TableSlot, LIN, S2};
use super::module::{self, ExportKind, FuncType, ImportKind, Module};
use crate::image::{Image, Reserved, Section};
use crate::isa::Opcode;
use crate::machine::{sys, MAX_MEM_MIB};

/// Where the runtime data starts.
pub const DATA_BASE: u64 = 0x1000;
/// Bytes of stack a compiled program gets.
pub const WASM_STACK: u64 = 8 << 20;
/// Default ceiling of a linear memory, in MiB (`--wasm-memory`).
pub const DEFAULT_MEMORY_MIB: u64 = 1024;

/// How to compile.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub features: WasmFeatures,
    /// Most MiB a linear memory may grow to (its declared maximum if lower).
    pub memory_mib: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { features: module::program_features(), memory_mib: DEFAULT_MEMORY_MIB }
    }
}

/// A compiled command: its image, and what running it needs.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub image: Image,
    pub info: CompileInfo,
}

/// What a compiled command needs to run, and what compiling it took.
#[derive(Clone, Debug)]
pub struct CompileInfo {
    /// Memory the image needs, in MiB.
    pub mem_mib: u64,
    /// Address of the memory descriptor (end address, base address), the
    /// WASI host's view of the linear memory.
    pub memory_desc: Option<u64>,
    /// Operators lowered, instructions emitted, time taken.
    pub wasm_ops: u64,
    pub instructions: u64,
    pub compile_time: Duration,
    /// Every defined function's entry address and name, by address.
    pub symbols: Vec<(u64, String)>,
}

fn resolve_imports(m: &Module<'_>) -> Result<Vec<Callee>, LinkError> {
    let set = HostSet { wasi: true, spectest: false };
    let mut funcs = Vec::with_capacity(m.funcs.len());
    for imp in &m.imports {
        let ImportKind::Func(t) = imp.kind else {
            return Err(LinkError::MissingImport {
                offset: imp.offset,
                module: imp.module.clone(),
                name: imp.name.clone(),
                hint: " (a program run by pvm may import only WASI functions)",
            });
        };
        let Some((n, ty)) = host::lookup(set, &imp.module, &imp.name) else {
            return Err(LinkError::MissingImport {
                offset: imp.offset,
                module: imp.module.clone(),
                name: imp.name.clone(),
                hint: " (not a WASI preview 1 function)",
            });
        };
        if m.types.get(t as usize) != Some(&ty) {
            return Err(LinkError::Incompatible {
                offset: imp.offset,
                module: imp.module.clone(),
                name: imp.name.clone(),
                why: format!("WASI's is {ty:?}"),
            });
        }
        funcs.push(Callee::Host(n));
    }
    funcs.resize(m.funcs.len(), Callee::Local);
    Ok(funcs)
}

/// The function `_start` or the start function must exist; `_start` is
/// `[] -> []`.
fn entry_funcs(m: &Module<'_>) -> Result<Option<u32>, LinkError> {
    let start = match m.export("_start") {
        Some((ExportKind::Func, f)) => {
            if *m.func_type(f) != FuncType::default() {
                return Err(LinkError::BadEntry);
            }
            Some(f)
        }
        _ => None,
    };
    if start.is_none() && m.start.is_none() {
        return Err(LinkError::NoEntry);
    }
    Ok(start)
}

/// Compiles a WASI command.
pub fn compile(bytes: &[u8], opts: &Options) -> Result<Compiled, WasmError> {
    let started = Instant::now();
    let m = module::parse(bytes, opts.features)?;
    let funcs = resolve_imports(&m)?;
    let main = entry_funcs(&m)?;
    let mut ids = TypeIds::default();
    let type_ids = ids.of(&m);
    let p = Placement::new(&m, DATA_BASE, Placement::default())?;
    let ceiling = (opts.memory_mib << 20) / PAGE;
    let max_pages = match m.memories.first() {
        Some(l) => {
            let max = l.max.unwrap_or(65536).min(ceiling);
            if l.min > max {
                return Err(LinkError::MemoryTooLarge { pages: l.min, ceiling: max }.into());
            }
            max
        }
        None => 0,
    };
    let global_values = link::global_values(&m, Vec::new());
    let globals = link::global_slots(&m, &p.globals, &global_values);
    let env = Env {
        module: &m,
        type_ids: type_ids.clone(),
        funcs,
        globals,
        memories: p.descs.iter().map(|&desc| MemorySlot { desc, max_pages }).collect(),
        tables: p.tables.iter().map(|&(addr, size)| TableSlot { addr, size }).collect(),
        cross_instance: false,
    };
    let mut code = Code::new(p.end.next_multiple_of(8));
    entry_stub(&mut code, &m, &p, main);
    // Host functions placed in tables need an address: a stub each.
    let stubs: Vec<u64> = env
        .funcs
        .iter()
        .map(|c| match *c {
            Callee::Host(n) => {
                let at = code.here();
                code.emit(Opcode::Sys, 0, 0, 0, sys::HOST + n as i32);
                code.emit(Opcode::Ret, 0, 0, 0, 0);
                at
            }
            _ => 0,
        })
        .collect();
    let entries = link::lower_all(&env, &mut code)?;
    link::patch_calls(&mut code, &m, &entries);
    let code_end = code.here();
    let linear = code_end.next_multiple_of(PAGE);
    let reserve = max_pages * PAGE;
    let stack_limit = linear + reserve;
    let mem = stack_limit + WASM_STACK;
    let mem_mib = mem.div_ceil(1 << 20);
    if mem_mib > MAX_MEM_MIB {
        return Err(LinkError::TooLarge(format!(
            "{mem_mib} MiB of code, linear memory and stack (at most {MAX_MEM_MIB}); lower --wasm-memory"
        ))
        .into());
    }
    code.relocate(|_| linear, stack_limit);
    let func_addr =
        |f: u32| (f as usize).checked_sub(m.imported_funcs).map_or_else(|| stubs[f as usize], |i| entries[i]);
    let initial = m.memories.first().map_or(0, |l| l.min * PAGE);
    link::check_segments(&m, &global_values, &p.tables.iter().map(|t| t.1).collect::<Vec<_>>(), &[initial])?;
    let data = runtime_data(&m, &p, &global_values, &type_ids, (linear, initial), func_addr);
    let mut sections = vec![Section { addr: DATA_BASE, bytes: data }];
    sections.extend(segments(&m, &global_values, linear));
    let instructions = code.instrs.len() as u64;
    let mut image = Image::new(code.base, Section { addr: code.base, bytes: code.bytes() }, sections);
    if reserve > 0 {
        image.reserved.push(Reserved { addr: linear, len: reserve });
    }
    let symbols = entries.iter().enumerate().map(|(i, &at)| (at, m.func_name((m.imported_funcs + i) as u32))).collect();
    let info = CompileInfo {
        symbols,
        mem_mib,
        memory_desc: p.descs.first().copied(),
        wasm_ops: m.bodies.iter().map(|b| b.ops.len() as u64).sum(),
        instructions,
        compile_time: started.elapsed(),
    };
    Ok(Compiled { image, info })
}

/// The runtime data section: the memory descriptor (end, base), the
/// globals' values and the tables' entries.
fn runtime_data(
    m: &Module<'_>,
    p: &Placement,
    global_values: &[u64],
    type_ids: &[u32],
    (linear, initial): (u64, u64),
    func_addr: impl Fn(u32) -> u64,
) -> Vec<u8> {
    let mut data = vec![0u8; (p.end - DATA_BASE) as usize];
    let mut put = |addr: u64, bytes: &[u8]| {
        let at = (addr - DATA_BASE) as usize;
        data[at..at + bytes.len()].copy_from_slice(bytes);
    };
    if let Some(&desc) = p.descs.first() {
        put(desc, &(linear + initial).to_le_bytes());
        put(desc + 8, &linear.to_le_bytes());
    }
    for (g, &addr) in p.globals.iter().enumerate() {
        put(addr, &global_values[g].to_le_bytes());
    }
    for e in &m.elements {
        let (base, _) = p.tables[e.table as usize];
        let at = link::eval(e.offset, global_values, |_| 0) & 0xffff_ffff;
        for (k, f) in e.funcs.iter().enumerate() {
            let entry =
                f.map_or([0; 16], |f| link::table_entry(func_addr(f), type_ids[m.funcs[f as usize] as usize], 0));
            put(base + (at + k as u64) * link::ENTRY_SIZE, &entry);
        }
    }
    data
}

/// Loads r14, runs the start function, then `_start`, then exits 0.
fn entry_stub(code: &mut Code, m: &Module<'_>, p: &Placement, main: Option<u32>) {
    if let Some(&desc) = p.descs.first() {
        code.emit(Opcode::Li, S2, 0, 0, 0);
        code.emit(Opcode::Ld64, LIN, S2, 0, desc as i32);
    }
    for f in m.start.into_iter().chain(main) {
        code.call(f);
    }
    code.emit(Opcode::Li, 1, 0, 0, 0);
    code.emit(Opcode::Sys, 0, 0, 0, sys::EXIT);
}

/// The data segments as sections: segments closer than a page share one
/// (applied in order, so a later one overwrites an earlier).
fn segments(m: &Module<'_>, globals: &[u64], linear: u64) -> Vec<Section> {
    let spans: Vec<(u64, u64)> = m
        .data
        .iter()
        .map(|d| {
            let at = link::eval(d.offset, globals, |_| 0) & 0xffff_ffff;
            (at, at + d.bytes.len() as u64)
        })
        .filter(|s| s.1 > s.0)
        .collect();
    let mut sorted = spans.clone();
    sorted.sort_unstable();
    let mut groups: Vec<(u64, u64)> = Vec::new();
    for (s, e) in sorted {
        match groups.last_mut() {
            Some(g) if s <= g.1 + 4096 => g.1 = g.1.max(e),
            _ => groups.push((s, e)),
        }
    }
    let mut bufs: Vec<Vec<u8>> = groups.iter().map(|g| vec![0; (g.1 - g.0) as usize]).collect();
    let nonempty = m.data.iter().filter(|d| !d.bytes.is_empty());
    for (d, &(s, e)) in nonempty.zip(&spans) {
        if let Some(i) = groups.iter().position(|g| g.0 <= s && e <= g.1) {
            let at = (s - groups[i].0) as usize;
            bufs[i][at..at + d.bytes.len()].copy_from_slice(d.bytes);
        }
    }
    groups.iter().zip(bufs).map(|(g, bytes)| Section { addr: linear + g.0, bytes }).collect()
}
