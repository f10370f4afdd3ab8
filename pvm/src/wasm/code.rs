//! The code buffer the lowering writes: pvm instructions at known absolute
//! addresses, labels bound later, calls to functions lowered later, and
//! relocations for what is placed after the code (the linear memories and
//! the stack).

use crate::isa::{Instr, Opcode, INSTR_SIZE};

/// A branch target inside the buffer, bound once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(u32);

/// An immediate the final placement decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reloc {
    /// Base address of linear memory `mem` plus `offset` (a wasm memarg
    /// offset, up to 2^32 - 1): if that does not fit in an immediate the
    /// access can only be out of bounds, and `i32::MAX` makes it trap.
    Linear { mem: u32, offset: u64 },
    /// The lowest address the stack may reach.
    StackLimit,
}

/// Instructions of one module, with their fix-ups.
#[derive(Debug)]
pub struct Code {
    /// Address of the first instruction.
    pub base: u64,
    pub instrs: Vec<Instr>,
    labels: Vec<Option<u32>>,
    /// Where the last label was bound (labels are bound at the end).
    last_bound: Option<u32>,
    fixups: Vec<(u32, Label)>,
    /// (instruction, function index): a direct call to a function's entry.
    pub calls: Vec<(u32, u32)>,
    pub relocs: Vec<(u32, Reloc)>,
}

/// A fix-up that could not be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodeError {
    #[error("a label was used but never bound (a front-end bug)")]
    Unbound,
    #[error("the code reaches past address {0:#x}: the module is too large for the pvm's 2 GiB address space")]
    TooLarge(u64),
}

impl Code {
    pub fn new(base: u64) -> Code {
        Code {
            base,
            instrs: Vec::new(),
            labels: Vec::new(),
            last_bound: None,
            fixups: Vec::new(),
            calls: Vec::new(),
            relocs: Vec::new(),
        }
    }

    /// Address of the next instruction.
    pub fn here(&self) -> u64 {
        self.base + self.instrs.len() as u64 * INSTR_SIZE
    }

    /// Appends an instruction; returns its index.
    pub fn emit(&mut self, op: Opcode, a: u8, b: u8, c: u8, imm: i32) -> u32 {
        self.instrs.push(Instr::new(op, a, b, c, imm));
        (self.instrs.len() - 1) as u32
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label((self.labels.len() - 1) as u32)
    }

    /// Binds `l` to the next instruction.
    pub fn bind(&mut self, l: Label) {
        self.labels[l.0 as usize] = Some(self.instrs.len() as u32);
        self.last_bound = Some(self.instrs.len() as u32);
    }

    /// Removes the last instruction if nothing refers to it (no branch
    /// fix-up, call or relocation) and no label is bound after it.
    pub fn pop_plain(&mut self) -> Option<Instr> {
        let at = self.instrs.len().checked_sub(1)? as u32;
        // Fix-ups, calls and relocations are recorded in code order.
        let referred = self.fixups.last().is_some_and(|f| f.0 == at)
            || self.calls.last().is_some_and(|c| c.0 == at)
            || self.relocs.last().is_some_and(|r| r.0 == at)
            || self.last_bound == Some(at + 1);
        if referred {
            return None;
        }
        self.instrs.pop()
    }

    /// True if `l` is bound.
    pub fn is_bound(&self, l: Label) -> bool {
        self.labels[l.0 as usize].is_some()
    }

    /// A branch or jump (`op a, b, target`) to `l`.
    pub fn branch(&mut self, op: Opcode, a: u8, b: u8, l: Label) {
        let at = self.emit(op, a, b, 0, 0);
        self.fixups.push((at, l));
    }

    /// `call` of function `f`.
    pub fn call(&mut self, f: u32) {
        let at = self.emit(Opcode::Call, 0, 0, 0, 0);
        self.calls.push((at, f));
    }

    /// An instruction whose immediate the placement decides.
    pub fn emit_reloc(&mut self, op: Opcode, a: u8, b: u8, c: u8, r: Reloc) {
        let at = self.emit(op, a, b, c, 0);
        self.relocs.push((at, r));
    }

    /// Sets the immediate of instruction `at`.
    pub fn patch(&mut self, at: u32, imm: i32) {
        self.instrs[at as usize].imm = imm;
    }

    /// Resolves the labels (calls and relocations stay for the linker).
    pub fn resolve_labels(&mut self) -> Result<(), CodeError> {
        for &(at, l) in &self.fixups {
            let k = self.labels[l.0 as usize].ok_or(CodeError::Unbound)?;
            let addr = self.base + u64::from(k) * INSTR_SIZE;
            let imm = i32::try_from(addr).map_err(|_| CodeError::TooLarge(addr))?;
            self.instrs[at as usize].imm = imm;
        }
        self.fixups.clear();
        let end = self.here();
        if end > i32::MAX as u64 {
            return Err(CodeError::TooLarge(end));
        }
        Ok(())
    }

    /// Applies the relocations: `linear(mem)` is the base address of a
    /// memory, `stack_limit` the stack's lowest address.
    pub fn relocate(&mut self, linear: impl Fn(u32) -> u64, stack_limit: u64) {
        for &(at, r) in &self.relocs {
            let value = match r {
                Reloc::Linear { mem, offset } => linear(mem).saturating_add(offset),
                Reloc::StackLimit => stack_limit,
            };
            self.instrs[at as usize].imm = i32::try_from(value).unwrap_or(i32::MAX);
        }
        self.relocs.clear();
    }

    /// The encoded instructions.
    pub fn bytes(&self) -> Vec<u8> {
        self.instrs.iter().flat_map(Instr::encode).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_calls_and_relocations_resolve() {
        let mut c = Code::new(0x2000);
        let l = c.label();
        c.branch(Opcode::Jmp, 0, 0, l);
        c.emit(Opcode::Nop, 0, 0, 0, 0);
        c.bind(l);
        c.emit_reloc(Opcode::Lw32U, 1, 2, 14, Reloc::Linear { mem: 0, offset: 4 });
        c.emit_reloc(Opcode::Lw32U, 1, 2, 14, Reloc::Linear { mem: 0, offset: u64::from(u32::MAX) });
        c.emit_reloc(Opcode::Li, 13, 0, 0, Reloc::StackLimit);
        c.resolve_labels().unwrap();
        c.relocate(|_| 0x10_0000, 0x4000_0000);
        assert_eq!(c.instrs[0].imm, 0x2010);
        assert_eq!(c.instrs[2].imm, 0x10_0004);
        assert_eq!(c.instrs[3].imm, i32::MAX);
        assert_eq!(c.instrs[4].imm, 0x4000_0000);
        let mut unbound = Code::new(0);
        let l = unbound.label();
        unbound.branch(Opcode::Jmp, 0, 0, l);
        assert_eq!(unbound.resolve_labels(), Err(CodeError::Unbound));
    }

    #[test]
    fn only_an_instruction_nothing_refers_to_is_taken_back() {
        let mut c = Code::new(0);
        c.emit(Opcode::AddI, 1, 0, 0, 1);
        assert_eq!(c.pop_plain().map(|i| i.op), Some(Opcode::AddI));
        assert!(c.pop_plain().is_none());
        c.emit(Opcode::AddI, 1, 0, 0, 1);
        let l = c.label();
        c.bind(l);
        assert!(c.pop_plain().is_none(), "a label is bound after it");
        c.call(3);
        assert!(c.pop_plain().is_none());
        c.emit_reloc(Opcode::Li, 13, 0, 0, Reloc::StackLimit);
        assert!(c.pop_plain().is_none());
        c.branch(Opcode::Jmp, 0, 0, l);
        assert!(c.pop_plain().is_none());
    }
}
