//! Structured control flow: blocks, loops, ifs, branches (with the values
//! they carry moved to the target's homes), br_table as a jump table,
//! returns.

use wasmparser::BlockType;

use super::stack::{Entry, Operand};
use super::{FuncLower, Loc, TrapStub, S1, S2, SP};
use crate::isa::{Opcode, INSTR_SIZE};
use crate::wasm::code::{Code, Label};

/// What opened a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Block,
    Loop,
    If,
    Else,
    /// The function body: a branch to it returns.
    Function,
    /// Opened in unreachable code: nothing is emitted for it.
    Dead,
}

/// An open block.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    kind: Kind,
    /// Where a branch to the frame goes (a loop's start, else the end).
    label: Option<Label>,
    /// The false branch of an `if` without its `else` yet.
    else_label: Option<Label>,
    /// Stack height below the frame's parameters.
    height: usize,
    params: usize,
    results: usize,
    /// A branch targets the label.
    targeted: bool,
}

impl Frame {
    pub fn function(_code: &mut Code, results: usize) -> Frame {
        Frame { kind: Kind::Function, label: None, else_label: None, height: 0, params: 0, results, targeted: false }
    }

    pub fn dead(height: usize) -> Frame {
        Frame { kind: Kind::Dead, label: None, else_label: None, height, params: 0, results: 0, targeted: false }
    }

    /// Values a branch to this frame carries.
    fn arity(&self) -> usize {
        if self.kind == Kind::Loop {
            self.params
        } else {
            self.results
        }
    }
}

impl FuncLower<'_, '_> {
    fn block_arity(&self, bt: BlockType) -> (usize, usize) {
        match bt {
            BlockType::Empty => (0, 0),
            BlockType::Type(_) => (0, 1),
            BlockType::FuncType(t) => {
                let t = &self.env.module.types[t as usize];
                (t.params.len(), t.results.len())
            }
        }
    }

    fn open(&mut self, kind: Kind, bt: BlockType, label: Label, else_label: Option<Label>) {
        let (params, results) = self.block_arity(bt);
        let height = self.stack.len() - params;
        self.frames.push(Frame { kind, label: Some(label), else_label, height, params, results, targeted: false });
    }

    pub(super) fn block(&mut self, bt: BlockType, kind: Kind) {
        self.materialize_all();
        let label = self.code.label();
        if kind == Kind::Loop {
            self.code.bind(label);
        }
        self.open(kind, bt, label, None);
    }

    pub(super) fn if_(&mut self, bt: BlockType) {
        let (cond, _) = self.pop_entry();
        self.materialize_all();
        let else_label = self.code.label();
        self.branch_on(cond, false, else_label);
        let end = self.code.label();
        self.open(Kind::If, bt, end, Some(else_label));
    }

    /// Branches to `l` if `cond` is true (`when`) or false.
    pub(super) fn branch_on(&mut self, cond: Entry, when: bool, l: Label) {
        if let Entry::Cmp { cmp, a, b } = cond {
            let cmp = if when { cmp } else { cmp.negate() };
            let (op, swap) = cmp.branch_op();
            let zero = b == Operand::Const(0);
            match (cmp.kind, zero) {
                (super::numeric::CmpKind::Eq, true) => {
                    let ra = self.reg(a, S1);
                    self.code.branch(Opcode::Beqz, ra, 0, l);
                }
                (super::numeric::CmpKind::Ne, true) => {
                    let ra = self.reg(a, S1);
                    self.code.branch(Opcode::Bnez, ra, 0, l);
                }
                _ => {
                    let (x, y) = if swap { (b, a) } else { (a, b) };
                    let rx = self.reg(x, S1);
                    let ry = self.reg(y, S2);
                    self.code.branch(op, rx, ry, l);
                }
            }
            return;
        }
        self.stack.push(cond);
        let c = self.pop();
        let rc = self.reg(c, S1);
        self.code.branch(if when { Opcode::Bnez } else { Opcode::Beqz }, rc, 0, l);
    }

    /// Moves the values a branch to frame `f` carries into its homes.
    fn branch_moves(&mut self, f: Frame) {
        let n = f.arity();
        let top = self.stack.len();
        for i in 0..n {
            let src = self.operand_at(top - n + i);
            let dst = self.a.homes[f.height + i];
            self.mov(dst, src);
        }
    }

    /// True if a branch to `f` needs moves.
    fn needs_moves(&self, f: Frame) -> bool {
        let n = f.arity();
        let top = self.stack.len();
        (0..n).any(|i| self.stack[top - n + i] != Entry::Home || top - n != f.height)
    }

    fn frame_at(&self, depth: u32) -> Frame {
        self.frames[self.frames.len() - 1 - depth as usize]
    }

    fn mark_targeted(&mut self, depth: u32) {
        let k = self.frames.len() - 1 - depth as usize;
        self.frames[k].targeted = true;
    }

    /// Leaves the frame's values in its homes at the end of its code.
    fn fall_through(&mut self, f: Frame) {
        let n = f.results;
        let top = self.stack.len();
        for i in 0..n {
            let src = self.operand_at(top - n + i);
            self.mov(self.a.homes[f.height + i], src);
        }
    }

    /// The stack as a label leaves it: `n` values above `height`, at home.
    fn reset_stack(&mut self, height: usize, n: usize) {
        self.stack.truncate(height);
        self.stack.extend(std::iter::repeat_n(Entry::Home, n));
    }

    pub(super) fn else_(&mut self) {
        let Some(&f) = self.frames.last() else { return };
        if f.kind != Kind::If {
            return;
        }
        if self.reachable {
            self.fall_through(f);
            if let Some(l) = f.label {
                self.code.branch(Opcode::Jmp, 0, 0, l);
            }
            if let Some(f) = self.frames.last_mut() {
                f.targeted = true;
            }
        }
        if let Some(l) = f.else_label {
            self.code.bind(l);
        }
        self.reset_stack(f.height, f.params);
        self.reachable = true;
        if let Some(last) = self.frames.last_mut() {
            last.kind = Kind::Else;
            last.else_label = None;
        }
    }

    pub(super) fn end(&mut self) {
        let Some(f) = self.frames.pop() else { return };
        match f.kind {
            Kind::Dead | Kind::Loop => {}
            Kind::Function => {
                if self.reachable {
                    self.return_();
                }
            }
            Kind::Block | Kind::If | Kind::Else => {
                let fell = self.reachable;
                if fell {
                    self.fall_through(f);
                }
                if let Some(l) = f.else_label {
                    self.code.bind(l);
                }
                if let Some(l) = f.label {
                    self.code.bind(l);
                }
                self.reset_stack(f.height, f.results);
                self.reachable = fell || f.targeted || f.else_label.is_some();
            }
        }
    }

    pub(super) fn br(&mut self, depth: u32) {
        let f = self.frame_at(depth);
        if f.kind == Kind::Function {
            self.return_();
            return;
        }
        self.branch_moves(f);
        self.mark_targeted(depth);
        if let Some(l) = f.label {
            self.code.branch(Opcode::Jmp, 0, 0, l);
        }
        self.reachable = false;
    }

    pub(super) fn br_if(&mut self, depth: u32) {
        let (cond, _) = self.pop_entry();
        let f = self.frame_at(depth);
        self.mark_targeted(depth);
        match f.label {
            Some(l) if f.kind != Kind::Function && !self.needs_moves(f) => self.branch_on(cond, true, l),
            _ => {
                let skip = self.code.label();
                self.branch_on(cond, false, skip);
                let reachable = self.reachable;
                let stack = self.stack.clone();
                self.br(depth);
                self.stack = stack;
                self.reachable = reachable;
                self.code.bind(skip);
            }
        }
    }

    /// `br_table`: up to three targets as compares, more as a table of
    /// jumps indexed by the operand.
    pub(super) fn br_table(&mut self, targets: &[u32], default: u32) {
        let idx = self.pop();
        let rx = self.reg(idx, S2);
        let mut depths: Vec<u32> = targets.to_vec();
        depths.push(default);
        // One label per distinct target: its own if no values move, else
        // a stub that moves them.
        let mut stubs: Vec<(u32, Label)> = Vec::new();
        let mut label_of = |s: &mut Self, d: u32| -> Label {
            let f = s.frame_at(d);
            s.mark_targeted(d);
            match f.label {
                Some(l) if f.kind != Kind::Function && !s.needs_moves(f) => l,
                _ => {
                    if let Some(&(_, l)) = stubs.iter().find(|(x, _)| *x == d) {
                        return l;
                    }
                    let l = s.code.label();
                    stubs.push((d, l));
                    l
                }
            }
        };
        let labels: Vec<Label> = depths.iter().map(|&d| label_of(self, d)).collect();
        let (cases, default_label) = labels.split_at(targets.len());
        if cases.len() <= 3 {
            for (i, &l) in cases.iter().enumerate() {
                if i == 0 {
                    self.code.branch(Opcode::Beqz, rx, 0, l);
                } else {
                    self.emit(Opcode::SeqI32, S1, rx, 0, i as i32);
                    self.code.branch(Opcode::Bnez, S1, 0, l);
                }
            }
            self.code.branch(Opcode::Jmp, 0, 0, default_label[0]);
        } else {
            self.emit(Opcode::SltuI, S1, rx, 0, cases.len() as i32);
            self.code.branch(Opcode::Beqz, S1, 0, default_label[0]);
            self.emit(Opcode::ShlI, S1, rx, 0, 3);
            let table = self.code.here() + 2 * INSTR_SIZE;
            self.emit(Opcode::AddI, S1, S1, 0, table as i32);
            self.emit(Opcode::Jr, S1, 0, 0, 0);
            for &l in cases {
                self.code.branch(Opcode::Jmp, 0, 0, l);
            }
        }
        for (d, l) in stubs {
            self.code.bind(l);
            let stack = self.stack.clone();
            self.br(d);
            self.stack = stack;
        }
        self.reachable = false;
    }

    /// Results to r0.., frame freed, `ret`.
    pub(super) fn return_(&mut self) {
        let k = self.ty.results.len();
        let top = self.stack.len();
        let mut moves: Vec<(Loc, Operand)> = Vec::with_capacity(k);
        for j in 0..k {
            moves.push((Loc::Reg(j as u8), self.operand_at(top - k + j)));
        }
        self.parallel_move(&moves);
        self.epilogue();
    }

    /// Frees the frame and returns (the results are in r0..).
    pub(super) fn epilogue(&mut self) {
        if self.a.frame > 0 && self.framed {
            self.emit(Opcode::AddI, SP, SP, 0, self.a.frame);
        }
        self.emit(Opcode::Ret, 0, 0, 0, 0);
        self.reachable = false;
    }

    /// True if the next operator returns from the function (`return`, the
    /// body's `end` or a branch to it), taking `n` results from the top.
    pub(super) fn returns_next(&self, n: usize) -> bool {
        if n != self.ty.results.len() {
            return false;
        }
        match self.next_op() {
            Some(wasmparser::Operator::Return) => true,
            Some(wasmparser::Operator::End) => self.frames.len() == 1,
            Some(&wasmparser::Operator::Br { relative_depth }) => {
                (relative_depth as usize) < self.frames.len() && self.frame_at(relative_depth).kind == Kind::Function
            }
            _ => false,
        }
    }

    /// Label of a shared trap stub raising WebAssembly trap `code`.
    pub(super) fn trap_label(&mut self, code: u32) -> Label {
        self.stub(TrapStub::Raised(code))
    }
}
