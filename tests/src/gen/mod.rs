//! A generator of differential test cases that varies the layout, not only
//! the code: memory sizes from 1 MiB to the largest (odd ones too), code
//! that ends at the very top of memory or just below it, data at both
//! edges, stacks at their limit, and accesses, jumps and system calls aimed
//! at every boundary. Programs are built from snippets (loops, calls that
//! play with their return addresses, runs of pushes and pops under register
//! pressure, self-modifying stores and reads, float loops...), with
//! symbolic addresses resolved once the layout is known.
//!
//! Choices come from a [`Source`]: a seeded [`crate::Rng`] in the tests, the
//! fuzzer's input bytes in the fuzz target ([`Bytes`]).

mod snippets;

use pvm::image::{Image, Section, CODE_BASE};
use pvm::isa::{Instr, Opcode, INSTR_SIZE};
use pvm::run::{Engine, LoadError, RunConfig};

use crate::diff::{run_on, try_run_on, Final};

/// Where random choices come from.
pub trait Source {
    /// A number in `0..n` (0 when n is 0).
    fn below(&mut self, n: u64) -> u64;
}

impl Source for crate::Rng {
    fn below(&mut self, n: u64) -> u64 {
        crate::Rng::below(self, n)
    }
}

/// Input bytes as choices (the fuzz target's source); 0 once they run out.
#[derive(Debug)]
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }
}

impl Source for Bytes<'_> {
    fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        let width = if n <= 0x100 {
            1
        } else if n <= 0x1_0000 {
            2
        } else {
            8
        };
        let mut v = 0u64;
        for _ in 0..width {
            v = v << 8 | u64::from(self.data.get(self.pos).copied().unwrap_or(0));
            self.pos += 1;
        }
        v % n
    }
}

/// True with probability `percent` / 100.
pub fn chance(src: &mut dyn Source, percent: u64) -> bool {
    src.below(100) < percent
}

/// One of `items` (which must not be empty).
pub fn pick<T: Copy>(src: &mut dyn Source, items: &[T]) -> T {
    items[src.below(items.len() as u64) as usize]
}

/// A value an instruction's immediate takes, resolved once the layout is
/// known: a constant, or an address relative to a part of the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Val {
    Const(i64),
    /// A code label plus an offset in bytes.
    Label(usize, i64),
    CodeStart(i64),
    CodeEnd(i64),
    MemTop(i64),
    StackLimit(i64),
    /// Data section n (if it was placed; else the code end) plus an offset.
    Data(usize, i64),
}

/// Where the code section goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodePlace {
    /// At the assembler's address, 0x1000.
    Low,
    /// Ending exactly at the top of memory.
    Top,
    /// Ending this many instructions below the top.
    NearTop(u64),
    /// At address 0.
    Zero,
    /// At this fraction (in 1/256) of the free memory.
    Anywhere(u64),
}

/// Where a data section goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataPlace {
    /// Right after the code (and what came before), `gap` bytes later.
    AfterCode { gap: u64 },
    /// Ending at the top of memory.
    Top,
    /// At address 0.
    Bottom,
    /// Ending right below the code.
    BelowCode,
}

/// A data section to place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataSpec {
    pub len: u64,
    pub place: DataPlace,
    pub fill: u8,
}

/// Memory size and placements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub mem_mib: u64,
    pub code: CodePlace,
    pub data: Vec<DataSpec>,
}

impl Layout {
    fn generate(src: &mut dyn Source) -> Layout {
        let mem_mib = match src.below(100) {
            0..=44 => 1,
            45..=59 => 2,
            60..=69 => 3,
            70..=79 => pick(src, &[5, 7, 16, 33]),
            80..=93 => 1 + src.below(127),
            94..=96 => pick(src, &[255, 1023, 2047]),
            _ => 1 + src.below(2047),
        };
        let code = match src.below(100) {
            0..=39 => CodePlace::Low,
            40..=69 => CodePlace::Top,
            70..=79 => CodePlace::NearTop(1 + src.below(4)),
            80..=84 => CodePlace::Zero,
            _ => CodePlace::Anywhere(src.below(256)),
        };
        let data = (0..src.below(4))
            .map(|_| {
                let len = match src.below(4) {
                    0 => 1 + src.below(16),
                    1 | 2 => 8 * (1 + src.below(32)),
                    _ => 1 + src.below(4096),
                };
                let place = match src.below(5) {
                    0 | 1 => DataPlace::AfterCode { gap: pick(src, &[0, 1, 7, 8, 16, 4096]) },
                    2 => DataPlace::Top,
                    3 => DataPlace::Bottom,
                    _ => DataPlace::BelowCode,
                };
                DataSpec { len, place, fill: src.below(256) as u8 }
            })
            .collect();
        Layout { mem_mib, code, data }
    }
}

/// One instruction with a symbolic immediate.
#[derive(Clone, Copy, Debug)]
struct Ins {
    op: Opcode,
    a: u8,
    b: u8,
    c: u8,
    imm: Val,
}

/// A program being generated: instructions and labels.
#[derive(Debug, Default)]
struct Program {
    ins: Vec<Ins>,
    /// Label number to instruction index.
    labels: Vec<Option<usize>>,
}

impl Program {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, l: usize) {
        self.labels[l] = Some(self.ins.len());
    }
    fn emit(&mut self, op: Opcode, a: u8, b: u8, c: u8, imm: Val) {
        self.ins.push(Ins { op, a, b, c, imm });
    }
}

/// Where everything ended up.
#[derive(Clone, Copy, Debug)]
struct Placed {
    mem: u64,
    code_start: u64,
    code_end: u64,
    stack_limit: u64,
}

/// Places the code and the data sections; a section that fits nowhere is
/// left out.
fn place(layout: &Layout, code_len: u64) -> (u64, Vec<Option<u64>>) {
    let mem = layout.mem_mib << 20;
    let code_start = match layout.code {
        CodePlace::Low => CODE_BASE,
        CodePlace::Top => mem - code_len,
        CodePlace::NearTop(k) => mem.saturating_sub(code_len + k * INSTR_SIZE),
        CodePlace::Zero => 0,
        CodePlace::Anywhere(f) => ((mem - code_len) * f / 256) / INSTR_SIZE * INSTR_SIZE,
    };
    let mut used = vec![(code_start, code_start + code_len)];
    let mut after = code_start + code_len;
    let addrs = layout
        .data
        .iter()
        .map(|d| {
            let at = match d.place {
                DataPlace::AfterCode { gap } => after + gap,
                DataPlace::Top => mem.checked_sub(d.len)?,
                DataPlace::Bottom => 0,
                DataPlace::BelowCode => code_start.checked_sub(d.len)?,
            };
            let end = at.checked_add(d.len).filter(|&e| e <= mem)?;
            if used.iter().any(|&(s, e)| at < e && end > s) {
                return None;
            }
            used.push((at, end));
            after = after.max(end);
            Some(at)
        })
        .collect();
    (code_start, addrs)
}

/// A generated case: the image, how to run it, and its stdin.
#[derive(Clone, Debug)]
pub struct Case {
    pub image: Image,
    pub cfg: RunConfig,
    pub input: Vec<u8>,
    pub layout: Layout,
}

/// Generates a case.
pub fn case(src: &mut dyn Source) -> Case {
    let layout = Layout::generate(src);
    let mut g = snippets::Gen::new(src);
    g.program();
    let (program, input) = (g.prog, g.input);
    let code_len = program.ins.len() as u64 * INSTR_SIZE;
    let (code_start, data_at) = place(&layout, code_len);
    let data: Vec<Section> = layout
        .data
        .iter()
        .zip(&data_at)
        .filter_map(|(d, at)| Some(Section { addr: (*at)?, bytes: vec![d.fill; d.len as usize] }))
        .collect();
    let image_end = data.iter().map(|s| s.addr + s.bytes.len() as u64).fold(code_start + code_len, u64::max);
    let p = Placed {
        mem: layout.mem_mib << 20,
        code_start,
        code_end: code_start + code_len,
        stack_limit: image_end.next_multiple_of(16),
    };
    let resolve = |v: Val| -> i64 {
        let base = |a: u64, off: i64| a as i64 + off;
        match v {
            Val::Const(c) => c,
            Val::Label(l, off) => {
                let at = program.labels[l].unwrap_or(program.ins.len());
                base(p.code_start + at as u64 * INSTR_SIZE, off)
            }
            Val::CodeStart(off) => base(p.code_start, off),
            Val::CodeEnd(off) => base(p.code_end, off),
            Val::MemTop(off) => base(p.mem, off),
            Val::StackLimit(off) => base(p.stack_limit, off),
            Val::Data(n, off) => base(data_at.get(n).copied().flatten().unwrap_or(p.code_end), off),
        }
    };
    let code: Vec<u8> =
        program.ins.iter().flat_map(|i| Instr::new(i.op, i.a, i.b, i.c, resolve(i.imm) as i32).encode()).collect();
    let image = Image::new(p.code_start, Section { addr: p.code_start, bytes: code }, data);
    let fuel = pick(src, &[30, 100, 300, 2_000, 20_000, 100_000]);
    let cache_size = pick(src, &[2048, 8192, 1 << 20, pvm::jit::DEFAULT_CACHE_SIZE]);
    let cfg = RunConfig { mem_mib: layout.mem_mib, fuel: Some(fuel), cache_size, ..Default::default() };
    Case { image, cfg, input, layout }
}

/// What checking a case found.
#[derive(Debug)]
pub enum Verdict {
    /// Both engines ran it and agree: the interpreter's result, and what
    /// the translator did.
    Agree(Box<Final>, Box<pvm::jit::JitStats>),
    /// Not comparable: the image does not verify, or a block does not fit
    /// the tiny code cache (a clean error of the translator).
    Skipped(&'static str),
}

/// Runs `case` on both engines and compares everything they leave.
///
/// # Errors
///
/// A description of the disagreement: both results, the layout and the
/// program's disassembly.
pub fn check(case: &Case) -> Result<Verdict, String> {
    if pvm::verify::verify(&case.image).is_err() {
        return Ok(Verdict::Skipped("does not verify"));
    }
    let (interp, _) = run_on(&case.image, RunConfig { engine: Engine::Interp, ..case.cfg }, &case.input);
    // (threshold 1 first: its statistics are the verdict's, every block translated)
    let mut first = None;
    let mut disagreement = None;
    for t in crate::diff::thresholds() {
        let jit_cfg = RunConfig { engine: Engine::Jit, jit_threshold: t, ..case.cfg };
        let (jit, stats) = match try_run_on(&case.image, jit_cfg, &case.input) {
            Err(LoadError::Jit(pvm::jit::JitError::CacheTooSmall(_))) => {
                return Ok(Verdict::Skipped("cache too small"))
            }
            Err(e) => return Err(format!("the translator failed (--jit-threshold {t}): {e}")),
            Ok((jit, stats)) => (jit, stats.unwrap_or_default()),
        };
        if jit != interp {
            disagreement = Some((t, jit));
            break;
        }
        first.get_or_insert(stats);
    }
    let Some((threshold, jit)) = disagreement else {
        return Ok(Verdict::Agree(Box::new(interp), Box::new(first.unwrap_or_default())));
    };
    Err(format!(
        "the engines disagree (--jit-threshold {threshold})\ninterp: {interp:?}\njit:    {jit:?}\nlayout: {:?}, code at {:#x}..{:#x}, cfg {:?}, input {:?}\n{}",
        case.layout,
        case.image.code.addr,
        case.image.code.addr + case.image.code.bytes.len() as u64,
        case.cfg,
        case.input,
        pvm::disasm::disassemble(&case.image)
    ))
}
