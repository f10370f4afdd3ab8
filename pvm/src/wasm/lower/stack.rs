//! The lazy operand stack: entries, operands, moves between locations, and
//! the numeric, local, global and select operators that work on them.

use super::numeric::{Cmp, CmpKind, Num};
use super::{FuncLower, Loc, S1, S2, SP};
use crate::isa::Opcode;

/// An operand-stack entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// In the home of its depth.
    Home,
    /// A constant (i32 and f32 zero-extended).
    Const(u64),
    /// The current value of a local (until the local is written).
    Local(u32),
    /// A comparison not yet computed (the next operator branches on it).
    Cmp { cmp: Cmp, a: Operand, b: Operand },
}

/// A value an instruction reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    Loc(Loc),
    Const(u64),
}

/// Where a result goes.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    loc: Loc,
    /// A following `local.tee` of this local: push it afterwards.
    tee: Option<u32>,
    /// The function returns the result next: it goes to r0 and the
    /// function returns right after it.
    ret: bool,
}

impl FuncLower<'_, '_> {
    fn slot_addr(&self, off: i32) -> i32 {
        off + self.sp_delta
    }

    /// Loads a constant into `r` (one instruction if it is a sign-extended
    /// 32-bit value, else `li` + `lih`).
    pub(super) fn load_const(&mut self, r: u8, v: u64) {
        let low = v as u32 as i32;
        self.emit(Opcode::Li, r, 0, 0, low);
        if i64::from(low) as u64 != v {
            self.emit(Opcode::Lih, r, 0, 0, (v >> 32) as i32);
        }
    }

    /// `dst = src`.
    pub(super) fn mov(&mut self, dst: Loc, src: Operand) {
        match (dst, src) {
            (Loc::Reg(d), Operand::Loc(Loc::Reg(s))) => {
                if d != s {
                    self.emit(Opcode::Mov, d, s, 0, 0);
                }
            }
            (Loc::Reg(d), Operand::Loc(Loc::Slot(o))) => self.emit(Opcode::Ld64, d, SP, 0, self.slot_addr(o)),
            (Loc::Reg(d), Operand::Const(v)) => self.load_const(d, v),
            (Loc::Slot(o), Operand::Loc(Loc::Slot(s))) if o == s => {}
            (Loc::Slot(o), src) => {
                let r = self.reg(src, S1);
                self.emit(Opcode::St64, r, SP, 0, self.slot_addr(o));
            }
        }
    }

    /// A register holding `src`: its own, the one a constant is kept in,
    /// or `scratch` loaded with it.
    pub(super) fn reg(&mut self, src: Operand, scratch: u8) -> u8 {
        let kept = match src {
            Operand::Const(v) => self.a.consts.iter().find(|c| c.0 == v).map(|c| c.1),
            _ => None,
        };
        match (src, kept) {
            (Operand::Loc(Loc::Reg(r)), _) | (_, Some(r)) => r,
            (other, None) => {
                self.mov(Loc::Reg(scratch), other);
                scratch
            }
        }
    }

    /// Moves every `(dst, src)` at once. Either all sources are registers,
    /// or all destinations are (what prologues, calls and returns need).
    pub(super) fn parallel_move(&mut self, moves: &[(Loc, Operand)]) {
        for &(dst, src) in moves {
            if matches!(dst, Loc::Slot(_)) {
                self.mov(dst, src);
            }
        }
        let mut regs: Vec<(u8, u8)> = moves
            .iter()
            .filter_map(|&(d, s)| match (d, s) {
                (Loc::Reg(d), Operand::Loc(Loc::Reg(s))) if d != s => Some((d, s)),
                _ => None,
            })
            .collect();
        while !regs.is_empty() {
            if let Some(i) = regs.iter().position(|&(d, _)| !regs.iter().any(|&(_, s)| s == d)) {
                let (d, s) = regs.remove(i);
                self.emit(Opcode::Mov, d, s, 0, 0);
                continue;
            }
            // A cycle: park one destination's value in scratch.
            let d = regs[0].0;
            self.emit(Opcode::Mov, S1, d, 0, 0);
            for m in &mut regs {
                if m.1 == d {
                    m.1 = S1;
                }
            }
        }
        for &(dst, src) in moves {
            if matches!(dst, Loc::Reg(_)) && !matches!(src, Operand::Loc(Loc::Reg(_))) {
                self.mov(dst, src);
            }
        }
    }

    /// The operand an entry at depth `d` stands for (a comparison is
    /// computed into its home first).
    pub(super) fn operand_at(&mut self, d: usize) -> Operand {
        match self.stack[d] {
            Entry::Home => Operand::Loc(self.a.homes[d]),
            Entry::Const(v) => Operand::Const(v),
            Entry::Local(l) => Operand::Loc(self.a.locals[l as usize]),
            Entry::Cmp { .. } => {
                self.materialize(d);
                Operand::Loc(self.a.homes[d])
            }
        }
    }

    /// Pops the top entry as an operand.
    pub(super) fn pop(&mut self) -> Operand {
        let d = self.stack.len().saturating_sub(1);
        if self.stack.is_empty() {
            return Operand::Const(0);
        }
        let v = self.operand_at(d);
        self.stack.pop();
        v
    }

    /// Pops the top entry as it is.
    pub(super) fn pop_entry(&mut self) -> (Entry, usize) {
        let d = self.stack.len().saturating_sub(1);
        (self.stack.pop().unwrap_or(Entry::Const(0)), d)
    }

    /// Puts the entry at depth `d` into its home.
    pub(super) fn materialize(&mut self, d: usize) {
        let home = self.a.homes[d];
        match self.stack[d] {
            Entry::Home => return,
            Entry::Const(v) => self.mov(home, Operand::Const(v)),
            Entry::Local(l) => self.mov(home, Operand::Loc(self.a.locals[l as usize])),
            Entry::Cmp { cmp, a, b } => {
                let (rr, ri, swap) = cmp.set_op();
                let commutes = matches!(cmp.kind, CmpKind::Eq | CmpKind::Ne);
                let num = Num::Bin { rr, ri: Some(ri), wide: cmp.wide, swap, commutes };
                self.binary_into(num, a, b, Target { loc: home, tee: None, ret: false });
            }
        }
        self.stack[d] = Entry::Home;
    }

    /// Every entry into its home (at block boundaries).
    pub(super) fn materialize_all(&mut self) {
        for d in 0..self.stack.len() {
            self.materialize(d);
        }
    }

    /// Entries that read local `l` take its value now (it is about to change).
    pub(super) fn materialize_local(&mut self, l: u32) {
        for d in 0..self.stack.len() {
            if self.stack[d] == Entry::Local(l) {
                self.materialize(d);
            }
        }
    }

    /// Where the result of a one-instruction operation goes: the local a
    /// following `local.set`/`local.tee` names, or the next depth's home.
    pub(super) fn target(&mut self) -> Target {
        let next = match self.next_op() {
            Some(&wasmparser::Operator::LocalSet { local_index }) => Some((local_index, false)),
            Some(&wasmparser::Operator::LocalTee { local_index }) => Some((local_index, true)),
            _ => None,
        };
        if let Some((l, tee)) = next {
            if let Some(&loc) = self.a.locals.get(l as usize) {
                self.materialize_local(l);
                self.skip_next = true;
                return Target { loc, tee: tee.then_some(l), ret: false };
            }
        }
        if self.returns_next(1) {
            return Target { loc: Loc::Reg(0), tee: None, ret: true };
        }
        Target { loc: self.a.homes[self.stack.len()], tee: None, ret: false }
    }

    /// Writes a result: `f` gets the register to compute into.
    pub(super) fn write(&mut self, t: Target, f: impl FnOnce(&mut Self, u8)) {
        match t.loc {
            Loc::Reg(r) => f(self, r),
            Loc::Slot(o) => {
                f(self, S1);
                self.emit(Opcode::St64, S1, SP, 0, self.slot_addr(o));
            }
        }
    }

    /// Pushes what a target leaves on the stack (or returns, for a
    /// result the function returns next: the operators up to the return
    /// are then unreachable code).
    pub(super) fn push_result(&mut self, t: Target) {
        if t.ret {
            self.epilogue();
        } else if self.skip_next {
            if let Some(l) = t.tee {
                self.stack.push(Entry::Local(l));
            }
        } else {
            self.stack.push(Entry::Home);
        }
    }

    /// `local.set l` of `v`.
    pub(super) fn set_local(&mut self, l: u32, v: Operand) {
        self.materialize_local(l);
        if let Some(&dst) = self.a.locals.get(l as usize) {
            self.mov(dst, v);
        }
    }

    fn binary_into(&mut self, num: Num, a: Operand, b: Operand, t: Target) {
        let Num::Bin { rr, ri, wide, swap, commutes } = num else { return };
        let (mut x, mut y) = if swap { (b, a) } else { (a, b) };
        let fits = |v: u64| !wide || i64::from(v as i32) as u64 == v;
        if commutes && matches!(x, Operand::Const(_)) && !matches!(y, Operand::Const(_)) {
            std::mem::swap(&mut x, &mut y);
        }
        // Only a divisor of -1 overflows (and 0 traps either way): by any
        // other constant, the wrapping division is WebAssembly's.
        let ri = match (rr, y) {
            (Opcode::DivST, Operand::Const(c)) if c != 0 && c != u64::MAX => Some(Opcode::DivSI),
            _ => ri,
        };
        match (ri, y) {
            (Some(ri), Operand::Const(c)) if fits(c) => {
                let rx = self.reg(x, S1);
                self.write(t, |f, rd| f.emit(ri, rd, rx, 0, c as i32));
            }
            _ => {
                let rx = self.reg(x, S1);
                let ry = self.reg(y, S2);
                self.write(t, |f, rd| f.emit(rr, rd, rx, ry, 0));
            }
        }
    }

    /// A numeric operator.
    pub(super) fn numeric(&mut self, num: Num) -> Result<(), super::LowerError> {
        let fuses = self.next_op().is_some_and(fuses_into);
        match num {
            Num::Same => {}
            Num::Cmp(cmp) if fuses => {
                let b = self.pop();
                let a = self.pop();
                self.stack.push(Entry::Cmp { cmp, a, b });
            }
            Num::Eqz { wide } if fuses => {
                let a = self.pop();
                self.stack.push(Entry::Cmp { cmp: Cmp { kind: CmpKind::Eq, wide }, a, b: Operand::Const(0) });
            }
            Num::Cmp(cmp) => {
                let (rr, ri, swap) = cmp.set_op();
                let commutes = matches!(cmp.kind, CmpKind::Eq | CmpKind::Ne);
                self.numeric(Num::Bin { rr, ri: Some(ri), wide: cmp.wide, swap, commutes })?;
            }
            Num::Eqz { wide } => {
                let op = if wide { Opcode::SeqI } else { Opcode::SeqI32 };
                self.unary(|f, rd, ra| f.emit(op, rd, ra, 0, 0));
            }
            Num::Bin { rr, .. } if self.stack.last().is_some_and(|&e| is_identity(rr, e)) => {
                // x op c == x: the entry below stays as it is.
                self.stack.pop();
            }
            Num::Bin { .. } => {
                let b = self.pop();
                let a = self.pop();
                let t = self.target();
                let before = self.code.instrs.len();
                self.binary_into(num, a, b, t);
                self.note_producer(before, t);
                self.push_result(t);
            }
            Num::Rotr { rr, rotl_imm, bits } => {
                let b = self.pop();
                let a = self.pop();
                let t = self.target();
                let ra = self.reg(a, S1);
                match b {
                    Operand::Const(c) => {
                        let n = (u64::from(bits) - c % u64::from(bits)) % u64::from(bits);
                        self.write(t, |f, rd| f.emit(rotl_imm, rd, ra, 0, n as i32));
                    }
                    b => {
                        let rb = self.reg(b, S2);
                        self.write(t, |f, rd| f.emit(rr, rd, ra, rb, 0));
                    }
                }
                self.push_result(t);
            }
            Num::Un(Opcode::Zext32) if self.wrap_is_free() => {}
            Num::Un(op) => self.unary(|f, rd, ra| f.emit(op, rd, ra, 0, 0)),
        }
        Ok(())
    }

    /// True if the `i32.wrap_i64` at `pos` may leave its operand as it is:
    /// the operator that takes its result reads only the low 32 bits (a
    /// 32-bit integer operation that is not an identity, a load's address,
    /// a store's address or value), with at most a constant or a
    /// `local.get` pushed in between.
    fn wrap_is_free(&self) -> bool {
        let reads_low = |op: &wasmparser::Operator<'_>, b: Option<Entry>| match super::numeric::numeric(op) {
            Some(Num::Bin { rr, .. }) => is_low32(rr) && b.is_none_or(|b| !is_identity(rr, b)),
            Some(_) => false,
            None => match super::memory::access(op) {
                Some(super::memory::Access::Store(..)) => true,
                Some(super::memory::Access::Load(..)) => b.is_none(),
                None => false,
            },
        };
        let after = &self.ops[self.pos + 1..];
        match after {
            [next, ..] if reads_low(next, None) => true,
            [push, next, ..] => {
                let b = match *push {
                    wasmparser::Operator::I32Const { value } => Entry::Const(u64::from(value as u32)),
                    wasmparser::Operator::LocalGet { local_index } => Entry::Local(local_index),
                    _ => return false,
                };
                reads_low(next, Some(b))
            }
            _ => false,
        }
    }

    fn unary(&mut self, f: impl FnOnce(&mut Self, u8, u8)) {
        let a = self.pop();
        let t = self.target();
        let before = self.code.instrs.len();
        let ra = self.reg(a, S1);
        self.write(t, |s, rd| f(s, rd, ra));
        self.note_producer(before, t);
        self.push_result(t);
    }

    /// Records the operator's result as [`produced`](FuncLower::produced)
    /// if it is one instruction (from `before`) writing a home register
    /// and reading no scratch register.
    fn note_producer(&mut self, before: usize, t: Target) {
        let (Loc::Reg(h), false, None) = (t.loc, t.ret, t.tee) else { return };
        if self.skip_next || self.code.instrs.len() != before + 1 {
            return;
        }
        let i = self.code.instrs[before];
        if i.a == h && ![i.b, i.c].iter().any(|&r| r == S1 || r == S2) {
            self.produced = Some((self.pos, before, h));
        }
    }

    /// The local the top entry reads, if it is in a register that is not
    /// read after the current operator (so its register may take another
    /// value).
    fn dead_local_at_top(&self) -> Option<u32> {
        let Some(&Entry::Local(l)) = self.stack.last() else { return None };
        let Some(&Loc::Reg(r)) = self.a.locals.get(l as usize) else { return None };
        let live = self.a.live_after.get(self.pos).copied().unwrap_or(u16::MAX);
        (live & (1 << r) == 0).then_some(l)
    }

    /// `select`: the first value if the condition is not zero. A
    /// comparison as the condition becomes the branch over the second
    /// value's move (if the result has a register: the comparison's
    /// operands are then in other registers, or loaded into scratch after
    /// the first value's move). A first value that is a local read no
    /// more is not moved: the result is computed in the local's register.
    pub(super) fn select(&mut self) {
        let (cond, _) = self.pop_entry();
        let home = self.a.homes[self.stack.len() - 2];
        if matches!(cond, Entry::Cmp { .. }) && matches!(home, Loc::Reg(_)) {
            let v2 = self.pop();
            let (dst, result) = match self.dead_local_at_top() {
                Some(l) => {
                    self.stack.pop();
                    // Other entries reading the local keep its value.
                    self.materialize_local(l);
                    (self.a.locals[l as usize], Entry::Local(l))
                }
                None => {
                    let v1 = self.pop();
                    self.mov(home, v1);
                    (home, Entry::Home)
                }
            };
            let skip = self.code.label();
            self.branch_on(cond, true, skip);
            self.mov(dst, v2);
            self.code.bind(skip);
            self.stack.push(result);
            return;
        }
        self.stack.push(cond);
        let c = self.pop();
        let v2 = self.pop();
        let v1 = self.pop();
        let work = match home {
            Loc::Reg(_) => home,
            Loc::Slot(_) => Loc::Reg(S1),
        };
        let rc = self.reg(c, S2);
        self.mov(work, v1);
        let skip = self.code.label();
        self.code.branch(Opcode::Bnez, rc, 0, skip);
        self.mov(work, v2);
        self.code.bind(skip);
        if work != home {
            self.mov(home, Operand::Loc(work));
        }
        self.stack.push(Entry::Home);
    }

    pub(super) fn global_get(&mut self, g: u32) {
        let Some(slot) = self.env.globals.get(g as usize).copied() else { return };
        if let Some(v) = slot.constant {
            self.stack.push(Entry::Const(v));
            return;
        }
        let t = self.target();
        self.write(t, |f, rd| {
            f.emit(Opcode::Li, S2, 0, 0, 0);
            f.emit(Opcode::Ld64, rd, S2, 0, slot.addr as i32);
        });
        self.push_result(t);
    }

    pub(super) fn global_set(&mut self, g: u32) {
        let v = self.pop();
        let Some(slot) = self.env.globals.get(g as usize).copied() else { return };
        let rv = self.reg(v, S1);
        self.emit(Opcode::Li, S2, 0, 0, 0);
        self.emit(Opcode::St64, rv, S2, 0, slot.addr as i32);
    }
}

/// True if a comparison right before `next` is not computed: `next`
/// branches on it (`br_if`, `if`) or branches over a move (`select`).
pub(super) fn fuses_into(next: &wasmparser::Operator<'_>) -> bool {
    use wasmparser::Operator as W;
    matches!(next, W::BrIf { .. } | W::If { .. } | W::Select | W::TypedSelect { .. })
}

/// True if the integer operation `rr` reads only the low 32 bits of its
/// operands.
fn is_low32(rr: Opcode) -> bool {
    use Opcode as O;
    matches!(
        rr,
        O::Add32
            | O::Sub32
            | O::Mul32
            | O::And32
            | O::Or32
            | O::Xor32
            | O::Shl32
            | O::Shr32
            | O::Sar32
            | O::Rotl32
            | O::DivS32
            | O::DivU32
            | O::RemS32
            | O::RemU32
    )
}

/// True if `rr` with `b` as its second operand leaves the first unchanged
/// (i32 values are zero-extended, so the 32-bit forms' identities hold for
/// the whole register).
fn is_identity(rr: Opcode, b: Entry) -> bool {
    use Opcode as O;
    let Entry::Const(c) = b else { return false };
    match rr {
        O::Add | O::Sub | O::Or | O::Xor | O::Add32 | O::Sub32 | O::Or32 | O::Xor32 => c == 0,
        O::Shl | O::Shr | O::Sar | O::Rotl => c % 64 == 0,
        O::Shl32 | O::Shr32 | O::Sar32 | O::Rotl32 => c % 32 == 0,
        O::Mul | O::Mul32 => c == 1,
        O::And => c == u64::MAX,
        O::And32 => c == u64::from(u32::MAX),
        _ => false,
    }
}
