//! Lowering: each WebAssembly function becomes pvm code, one pass over
//! its validated operators.
//!
//! Registers: r0-r11 hold values (the locals and operand-stack depths
//! [`alloc`] picks), r12 and r13 are scratch, r14 holds the end address of
//! the linear memory (what `lw`/`sw` check against) and r15 is sp.
//!
//! The operand stack is kept lazily: `local.get` and constants push a
//! reference, not a move; an operation reads its operands where they are
//! and writes its result to its depth's home, or straight into the local a
//! following `local.set` names; a comparison followed by `br_if` or `if`
//! becomes one branch. At every block boundary the stack is in its homes,
//! so all paths into a label agree.
//!
//! Calls pass arguments in r0.. (beyond twelve, on the stack) and return
//! results in r0..; every register is the caller's to save, and a caller
//! saves only what [`live`] finds may be read after the call. A value
//! register may also keep a constant that instructions in loops could
//! only read from a register ([`consts`]): the prologue loads it, and so
//! does the code after every call. A leading block that only tests the
//! parameters and may return runs before the prologue ([`early`]).

mod alloc;
mod calls;
mod consts;
mod control;
mod early;
mod live;
mod memory;
pub mod numeric;
mod stack;
#[cfg(test)]
mod tests;

use wasmparser::Operator;

use self::alloc::Allocation;
use self::control::Frame;
use self::stack::Entry;
use super::code::{Code, Label};
use super::module::{FuncType, Module};
use crate::isa::Opcode;

/// Registers that hold values.
pub const VALUE_REGS: usize = 12;
/// Scratch registers.
pub const S1: u8 = 12;
pub const S2: u8 = 13;
/// The end of the linear memory.
pub const LIN: u8 = 14;
pub const SP: u8 = crate::isa::SP;

/// Where a value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    Reg(u8),
    /// At sp + offset (in the frame).
    Slot(i32),
}

/// What a call of a function reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callee {
    /// A function of this module (its entry is patched in by the linker).
    Local,
    /// Host function n (`sys HOST + n`).
    Host(u32),
    /// A function of another instance at this address, whose linear memory
    /// has its descriptor at `desc` (r14 is switched for it).
    Foreign { addr: u64, desc: Option<u64> },
}

/// A global: where it is, and its value if it can never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalSlot {
    pub addr: u64,
    pub constant: Option<u64>,
}

/// A linear memory: its descriptor (current end address, at +0) and the
/// most pages it may grow to here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySlot {
    pub desc: u64,
    pub max_pages: u64,
}

/// A table: 16-byte entries (code address u32, type id u32, memory
/// descriptor of the function's instance u64, 0 if none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSlot {
    pub addr: u64,
    pub size: u64,
}

/// Everything placement decided that the code refers to.
#[derive(Debug)]
pub struct Env<'m> {
    pub module: &'m Module<'m>,
    /// Canonical id of each type (equal types, equal ids; never 0).
    pub type_ids: Vec<u32>,
    pub funcs: Vec<Callee>,
    pub globals: Vec<GlobalSlot>,
    pub memories: Vec<MemorySlot>,
    pub tables: Vec<TableSlot>,
    /// Functions of other instances may be reached (through imports or
    /// shared tables): switch r14 around such calls.
    pub cross_instance: bool,
}

/// Why a function could not be lowered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LowerError {
    #[error("at byte {offset:#x}: the operator {what} is not supported by the pvm's WebAssembly front end")]
    Unsupported { offset: usize, what: String },
    #[error("at byte {offset:#x}: a function with {n} results (the front end returns at most {VALUE_REGS})")]
    TooManyResults { offset: usize, n: usize },
    #[error("at byte {offset:#x}: a frame of {bytes} bytes is too large")]
    FrameTooLarge { offset: usize, bytes: i64 },
}

/// Shared trap stubs of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapStub {
    /// `trap n`, a WebAssembly trap code (see `docs/isa.md`).
    Raised(u32),
    /// The stack is exhausted.
    Exhausted,
}

/// One function being lowered.
struct FuncLower<'a, 'm> {
    env: &'a Env<'m>,
    code: &'a mut Code,
    ops: &'a [Operator<'m>],
    offsets: &'a [usize],
    ty: &'a FuncType,
    a: Allocation,
    stack: Vec<Entry>,
    frames: Vec<Frame>,
    reachable: bool,
    /// Bytes pushed since the frame was set up (stack arguments of a call).
    sp_delta: i32,
    /// Operator being lowered.
    pos: usize,
    /// The next operator was folded into this one.
    skip_next: bool,
    stubs: Vec<(TrapStub, Label)>,
    /// The last instruction (its index) computed the operator at `.0`
    /// into the home register `.2` of the stack's top, reading neither
    /// scratch register: a call right after may compute it into its
    /// argument register instead.
    produced: Option<(usize, usize, u8)>,
    /// The frame is allocated (not yet, in an early exit: see [`early`]).
    framed: bool,
}

/// Lowers function `index` (of the module's index space) into `code`.
/// Returns the address of its entry.
pub fn lower_function(env: &Env<'_>, code: &mut Code, index: u32) -> Result<u64, LowerError> {
    let m = env.module;
    let body = &m.bodies[index as usize - m.imported_funcs];
    let ty = m.func_type(index);
    let offset = body.offsets.first().copied().unwrap_or(0);
    if ty.results.len() > VALUE_REGS {
        return Err(LowerError::TooManyResults { offset, n: ty.results.len() });
    }
    let a = alloc::allocate(ty, body);
    if i64::from(a.frame) > 1 << 24 {
        return Err(LowerError::FrameTooLarge { offset, bytes: i64::from(a.frame) });
    }
    let entry = code.here();
    let mut f = FuncLower {
        env,
        code,
        ops: &body.ops,
        offsets: &body.offsets,
        ty,
        a,
        stack: Vec::new(),
        frames: Vec::new(),
        reachable: true,
        sp_delta: 0,
        pos: 0,
        skip_next: false,
        stubs: Vec::new(),
        produced: None,
        framed: true,
    };
    let nparams = ty.params.len();
    let deferred = early::prefix_end(f.ops, &body.heights, &f.a, nparams);
    // The early exit must not read constants the prologue loads.
    let mut consts = if deferred.is_some() { std::mem::take(&mut f.a.consts) } else { Vec::new() };
    f.framed = deferred.is_none();
    if f.framed {
        f.prologue();
    }
    f.frames.push(Frame::function(f.code, ty.results.len()));
    while f.pos < f.ops.len() {
        let k = f.pos;
        if !f.framed && deferred.is_some_and(|d| k >= d) {
            f.a.consts = std::mem::take(&mut consts);
            f.framed = true;
            f.prologue();
        }
        f.op(k)?;
        f.pos += if std::mem::take(&mut f.skip_next) { 2 } else { 1 };
    }
    f.emit_stubs();
    Ok(entry)
}

impl FuncLower<'_, '_> {
    fn offset(&self) -> usize {
        self.offsets.get(self.pos).copied().unwrap_or(0)
    }

    fn unsupported(&self, op: &Operator<'_>) -> LowerError {
        LowerError::Unsupported { offset: self.offset(), what: format!("{op:?}") }
    }

    fn emit(&mut self, op: Opcode, a: u8, b: u8, c: u8, imm: i32) {
        self.code.emit(op, a, b, c, imm);
    }

    /// The operator after the current one.
    fn next_op(&self) -> Option<&Operator<'_>> {
        self.ops.get(self.pos + 1)
    }

    /// Allocates the frame, checks the stack, moves parameters that do not
    /// stay in their registers and zeroes the locals that need it.
    fn prologue(&mut self) {
        if self.a.frame > 0 {
            self.emit(Opcode::SubI, SP, SP, 0, self.a.frame);
            let exhausted = self.stub(TrapStub::Exhausted);
            self.code.emit_reloc(Opcode::Li, S2, 0, 0, super::code::Reloc::StackLimit);
            self.code.branch(Opcode::Bltu, SP, S2, exhausted);
        }
        let nparams = self.ty.params.len().min(VALUE_REGS);
        let moves: Vec<(Loc, stack::Operand)> = (0..nparams)
            .filter(|&i| self.a.locals[i] != Loc::Reg(i as u8))
            .map(|i| (self.a.locals[i], stack::Operand::Loc(Loc::Reg(i as u8))))
            .collect();
        self.parallel_move(&moves);
        for i in self.ty.params.len()..self.a.locals.len() {
            if self.a.needs_zero[i] {
                let dst = self.a.locals[i];
                self.mov(dst, stack::Operand::Const(0));
            }
        }
        self.load_consts(u16::MAX);
    }

    /// Loads the constants kept in registers of `mask`.
    fn load_consts(&mut self, mask: u16) {
        for (v, r) in self.a.consts.clone() {
            if mask & (1 << r) != 0 {
                self.load_const(r, v);
            }
        }
    }

    /// The label of a shared trap stub.
    fn stub(&mut self, kind: TrapStub) -> Label {
        if let Some(&(_, l)) = self.stubs.iter().find(|(k, _)| *k == kind) {
            return l;
        }
        let l = self.code.label();
        self.stubs.push((kind, l));
        l
    }

    fn emit_stubs(&mut self) {
        for (kind, l) in std::mem::take(&mut self.stubs) {
            self.code.bind(l);
            match kind {
                TrapStub::Raised(n) => self.emit(Opcode::Trap, 0, 0, 0, n as i32),
                TrapStub::Exhausted => {
                    // sp is below the limit: the push traps with a stack
                    // overflow (the trap below is never reached).
                    self.emit(Opcode::Push, S2, 0, 0, 0);
                    self.emit(Opcode::Trap, 0, 0, 0, super::TRAP_EXHAUSTED as i32);
                }
            }
        }
    }

    /// Lowers operator `k`.
    fn op(&mut self, k: usize) -> Result<(), LowerError> {
        let op = &self.ops[k];
        if !self.reachable {
            return self.unreachable_op(op);
        }
        if let Some(num) = numeric::numeric(op) {
            return self.numeric(num);
        }
        use Operator as W;
        match *op {
            W::Nop => {}
            W::Unreachable => {
                self.emit(Opcode::Trap, 0, 0, 0, super::TRAP_UNREACHABLE as i32);
                self.reachable = false;
            }
            W::Drop => {
                self.pop();
            }
            W::Select | W::TypedSelect { .. } => self.select(),
            W::LocalGet { local_index } => self.stack.push(Entry::Local(local_index)),
            W::LocalSet { local_index } => {
                let v = self.pop();
                self.set_local(local_index, v);
            }
            W::LocalTee { local_index } => {
                let v = self.pop();
                self.set_local(local_index, v);
                self.stack.push(Entry::Local(local_index));
            }
            W::GlobalGet { global_index } => self.global_get(global_index),
            W::GlobalSet { global_index } => self.global_set(global_index),
            W::I32Const { value } => self.stack.push(Entry::Const(u64::from(value as u32))),
            W::I64Const { value } => self.stack.push(Entry::Const(value as u64)),
            W::F32Const { value } => self.stack.push(Entry::Const(u64::from(value.bits()))),
            W::F64Const { value } => self.stack.push(Entry::Const(value.bits())),
            W::MemorySize { mem } => self.memory_size(mem),
            W::MemoryGrow { mem } => self.memory_grow(mem),
            W::Call { function_index } => self.call(function_index)?,
            W::CallIndirect { type_index, table_index } => self.call_indirect(type_index, table_index)?,
            W::Block { blockty } => self.block(blockty, control::Kind::Block),
            W::Loop { blockty } => self.block(blockty, control::Kind::Loop),
            W::If { blockty } => self.if_(blockty),
            W::Else => self.else_(),
            W::End => self.end(),
            W::Br { relative_depth } => self.br(relative_depth),
            W::BrIf { relative_depth } => self.br_if(relative_depth),
            W::BrTable { ref targets } => {
                let mut all = Vec::with_capacity(targets.len() as usize);
                for t in targets.targets() {
                    all.push(t.map_err(|_| self.unsupported(op))?);
                }
                self.br_table(&all, targets.default());
            }
            W::Return => self.return_(),
            _ => {
                if let Some(access) = memory::access(op) {
                    return self.memory_access(access);
                }
                return Err(self.unsupported(op));
            }
        }
        Ok(())
    }

    /// After an unconditional branch: only the structure matters until the
    /// code is reachable again.
    fn unreachable_op(&mut self, op: &Operator<'_>) -> Result<(), LowerError> {
        match op {
            Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => {
                self.frames.push(Frame::dead(self.stack.len()));
            }
            Operator::Else => self.else_(),
            Operator::End => self.end(),
            _ => {}
        }
        Ok(())
    }
}
