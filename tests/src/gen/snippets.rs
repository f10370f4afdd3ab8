//! The snippets programs are made of. Each aims at something the
//! translator does differently from the interpreter: register pressure
//! (guest registers in host registers or in the context), sp moved late
//! across runs of pushes and pops, loops kept in one block with floats in
//! XMM registers, calls as host calls with their return addresses played
//! with, bounds checks at every boundary, stores and reads into code.

use pvm::isa::{Class, Format, Instr, Opcode, SP};

use super::{chance, pick, Program, Source, Val};

/// Most instructions a program gets (the snippets stop adding there).
const MAX_INSTRUCTIONS: usize = 700;
/// Offsets around a boundary.
const OFFSETS: [i64; 19] = [-4096, -16, -9, -8, -7, -4, -3, -2, -1, 0, 0, 1, 2, 4, 7, 8, 9, 16, 4096];
/// f64 bit patterns worth computing with.
const FLOATS: [f64; 11] = [1.0, 2.0, 3.0, 0.5, -0.0, 0.0, 1e300, f64::MIN_POSITIVE, f64::INFINITY, f64::NAN, -2.5];

pub(super) struct Gen<'s> {
    src: &'s mut dyn Source,
    pub(super) prog: Program,
    pub(super) input: Vec<u8>,
    /// The registers the program mostly names: few (all in host registers)
    /// or all sixteen (some live in the context).
    hot: Vec<u8>,
    /// Labels of the functions, generated after the main body, and the
    /// register each counts its rounds in.
    funcs: Vec<usize>,
    counters: Vec<u8>,
    /// Labels of instructions a read or a store will overwrite.
    patches: Vec<usize>,
    depth: u32,
}

impl<'s> Gen<'s> {
    pub(super) fn new(src: &'s mut dyn Source) -> Self {
        let n = pick(src, &[3usize, 5, 8, 12, 16]);
        let mut all: Vec<u8> = (0..16).collect();
        for i in (1..all.len()).rev() {
            all.swap(i, src.below(i as u64 + 1) as usize);
        }
        let mut hot: Vec<u8> = all.into_iter().take(n).collect();
        if chance(src, 50) && !hot.contains(&SP) {
            hot.push(SP);
        }
        Gen {
            src,
            prog: Program::default(),
            input: Vec::new(),
            hot,
            funcs: Vec::new(),
            counters: Vec::new(),
            patches: Vec::new(),
            depth: 0,
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.src.below(n)
    }
    fn chance(&mut self, percent: u64) -> bool {
        chance(self.src, percent)
    }
    fn full(&self) -> bool {
        self.prog.ins.len() >= MAX_INSTRUCTIONS
    }

    /// A register, mostly from the hot set, never one of `avoid`.
    fn reg(&mut self, avoid: &[u8]) -> u8 {
        for _ in 0..8 {
            let r = if self.chance(90) { pick(self.src, &self.hot.clone()) } else { self.below(16) as u8 };
            if !avoid.contains(&r) {
                return r;
            }
        }
        (0..16).find(|r| !avoid.contains(r)).unwrap_or(0)
    }

    fn emit(&mut self, op: Opcode, a: u8, b: u8, c: u8, imm: Val) {
        self.prog.emit(op, a, b, c, imm);
    }

    /// `li r, v` (and `lih` for a constant outside the 32-bit range).
    fn li(&mut self, r: u8, v: Val) {
        self.emit(Opcode::Li, r, 0, 0, v);
        if let Val::Const(c) = v {
            if i32::try_from(c).is_err() {
                self.emit(Opcode::Lih, r, 0, 0, Val::Const(c >> 32));
            }
        }
    }

    /// An address or value near a boundary of the layout.
    fn interesting(&mut self) -> Val {
        let off = pick(self.src, &OFFSETS);
        match self.below(12) {
            0 => Val::Const(0),
            1 => Val::Const(self.below(64) as i64 - 32),
            2 => Val::Const(pick(self.src, &[i64::from(i32::MIN), i64::from(i32::MAX), -1, 1 << 31, i64::MIN])),
            3 | 4 => Val::CodeEnd(off),
            5 => Val::CodeStart(off),
            6 | 7 => Val::MemTop(off),
            8 => Val::StackLimit(off),
            9 => Val::Data(self.below(3) as usize, off),
            10 => Val::Const(self.src.below(1 << 32) as i64 - (1 << 31)),
            _ => match self.funcs.clone().as_slice() {
                [] => Val::CodeStart(8 * self.below(8) as i64),
                fs => Val::Label(pick(self.src, fs), pick(self.src, &[0, 0, 4, 8, -8])),
            },
        }
    }

    /// The whole program: main body, its end, the functions, and maybe a
    /// call as the very last instruction of the code.
    pub(super) fn program(&mut self) {
        for _ in 0..self.below(4) {
            let l = self.prog.label();
            self.funcs.push(l);
            let c = self.reg(&[SP]);
            self.counters.push(c);
        }
        for _ in 0..1 + self.below(10) {
            self.snippet(&[], true);
        }
        let last_call = self.chance(15) && !self.funcs.is_empty();
        let last = self.prog.label();
        let last_callee = self.below(self.funcs.len() as u64) as usize;
        if last_call {
            let n = 1 + self.below(4) as i64;
            self.li(self.counters[last_callee], Val::Const(n));
            self.emit(Opcode::Jmp, 0, 0, 0, Val::Label(last, 0));
        } else if self.chance(90) {
            let status = self.interesting();
            self.li(1, status);
            self.emit(Opcode::Sys, 0, 0, 0, Val::Const(0));
        }
        for (f, c) in self.funcs.clone().into_iter().zip(self.counters.clone()) {
            self.prog.bind(f);
            self.function(c);
        }
        for p in std::mem::take(&mut self.patches) {
            if self.prog.labels[p].is_none() {
                self.prog.bind(p);
                self.emit(Opcode::Nop, 0, 0, 0, Val::Const(0));
            }
        }
        // A label bound past the last instruction would be a branch target
        // outside the code: something must be there.
        let end = self.prog.ins.len();
        if self.prog.labels.contains(&Some(end)) {
            self.emit(Opcode::Nop, 0, 0, 0, Val::Const(0));
        }
        if last_call {
            self.prog.bind(last);
            self.emit(Opcode::Call, 0, 0, 0, Val::Label(self.funcs[last_callee], 0));
        }
        self.input = self.stdin();
    }

    /// What stdin holds: encoded instructions (for reads into code) and
    /// random bytes.
    fn stdin(&mut self) -> Vec<u8> {
        let mut input = Vec::new();
        for _ in 0..self.below(6) {
            if self.chance(70) {
                input.extend(self.plain_instr().encode());
            } else {
                input.extend((0..self.below(16)).map(|_| self.below(256) as u8));
            }
        }
        input
    }

    /// A function body, then its way back: a plain ret, a ret past the
    /// instruction after the call, a popped return address jumped to, or
    /// a ret to the call itself while its counter lasts (so the call runs
    /// again, chained, before the plain ret at the end).
    fn function(&mut self, counter: u8) {
        self.depth += 1;
        for _ in 0..self.below(4) {
            self.snippet(&[counter], false);
        }
        self.depth -= 1;
        let r = self.reg(&[SP, counter]);
        match self.below(6) {
            0 => {
                self.emit(Opcode::Pop, r, 0, 0, Val::Const(0));
                let by = pick(self.src, &[8, 16, 4]);
                self.emit(Opcode::AddI, r, r, 0, Val::Const(by));
                self.emit(Opcode::Push, r, 0, 0, Val::Const(0));
            }
            1 => {
                self.emit(Opcode::Pop, r, 0, 0, Val::Const(0));
                self.emit(Opcode::Jr, r, 0, 0, Val::Const(0));
                return;
            }
            2 => {
                // back to the call while the counter lasts, then a ret at
                // the end of the same block (so the last call's host frame
                // is live when it runs)
                let zero = self.reg(&[SP, counter, r]);
                let again = self.prog.label();
                self.li(zero, Val::Const(0));
                self.emit(Opcode::SubI, counter, counter, 0, Val::Const(1));
                self.emit(Opcode::Blt, zero, counter, 0, Val::Label(again, 0));
                self.emit(Opcode::Ret, 0, 0, 0, Val::Const(0));
                self.prog.bind(again);
                self.emit(Opcode::Pop, r, 0, 0, Val::Const(0));
                self.emit(Opcode::SubI, r, r, 0, Val::Const(8));
                self.emit(Opcode::Push, r, 0, 0, Val::Const(0));
            }
            3 => {
                // the same, the ret in a block of its own
                let zero = self.reg(&[SP, counter, r]);
                let done = self.prog.label();
                self.li(zero, Val::Const(0));
                self.emit(Opcode::SubI, counter, counter, 0, Val::Const(1));
                self.emit(Opcode::Bge, zero, counter, 0, Val::Label(done, 0));
                self.emit(Opcode::Pop, r, 0, 0, Val::Const(0));
                self.emit(Opcode::SubI, r, r, 0, Val::Const(8));
                self.emit(Opcode::Push, r, 0, 0, Val::Const(0));
                self.prog.bind(done);
            }
            _ => {}
        }
        self.emit(Opcode::Ret, 0, 0, 0, Val::Const(0));
    }

    /// One snippet; `avoid` are registers it must not write (a loop's
    /// counter), `control` whether it may branch away or call.
    fn snippet(&mut self, avoid: &[u8], control: bool) {
        if self.full() {
            return;
        }
        match self.below(20) {
            0..=2 => self.alu(avoid),
            3 => {
                let r = self.reg(avoid);
                let v = self.interesting();
                self.li(r, v);
            }
            4..=6 => self.memory(avoid),
            7 | 8 => self.stack(avoid),
            9 | 10 if self.depth < 2 => self.counted_loop(avoid, control),
            11 if control && !self.funcs.is_empty() => self.call(avoid),
            12 => self.syscall(avoid),
            13 => self.self_modify(avoid),
            14 => self.if_skip(avoid),
            15 | 19 => self.float_loop(avoid),
            16 => self.remainder_test(avoid),
            17 if control && self.chance(20) => {
                let r = self.reg(avoid);
                let v = self.interesting();
                self.li(r, v);
                self.emit(Opcode::Jr, r, 0, 0, Val::Const(0));
            }
            18 if control && self.chance(5) => {
                let code = self.below(6) as i64;
                self.emit(Opcode::Trap, 0, 0, 0, Val::Const(code));
            }
            18 => self.division_edge(avoid),
            _ => self.alu(avoid),
        }
    }

    /// A random instruction that neither transfers control nor touches
    /// memory, with registers from the hot set.
    fn plain_instr(&mut self) -> Instr {
        let ops: Vec<Opcode> = Opcode::ALL
            .iter()
            .copied()
            .filter(|op| {
                let c = op.info().class;
                !c.accesses_memory() && !op.info().ends_block && c != Class::Branch
            })
            .collect();
        let op = pick(self.src, &ops);
        let imm = match self.interesting() {
            Val::Const(c) => c as i32,
            _ => self.below(64) as i32 - 8,
        };
        Instr::new(op, self.reg(&[]), self.reg(&[]), self.reg(&[]), imm)
    }

    fn alu(&mut self, avoid: &[u8]) {
        let i = self.plain_instr();
        let a = if avoid.contains(&i.a) { self.reg(avoid) } else { i.a };
        let imm = if matches!(i.op.info().format, Format::RI | Format::LoadImm) && self.chance(50) {
            self.interesting()
        } else {
            Val::Const(i64::from(i.imm))
        };
        self.emit(i.op, a, i.b, i.c, imm);
    }

    /// A load or store near a boundary: base and offset split the address
    /// one way or the other.
    fn memory(&mut self, avoid: &[u8]) {
        // (a linear-memory access also ends its linear memory near a boundary)
        // (or an atomic read-modify-write: the translator's inline ones)
        let linear = self.chance(30);
        let atomic = !linear && self.chance(15);
        let ops: Vec<Opcode> = Opcode::ALL
            .iter()
            .copied()
            .filter(|op| {
                let c = op.info().class;
                if linear {
                    c.linear_memory()
                } else if atomic {
                    c == Class::Atomic
                } else {
                    matches!(c, Class::Load | Class::Store)
                }
            })
            .collect();
        let op = pick(self.src, &ops);
        let base = self.reg(&[avoid, &[SP]].concat());
        // (None: the base keeps whatever value it has)
        let (b, imm) = match self.below(4) {
            0 => (Some(Val::Const(0)), self.interesting()),
            1 => (Some(self.interesting()), Val::Const(pick(self.src, &OFFSETS))),
            2 => (Some(self.interesting()), self.interesting()),
            _ => (None, Val::Const(0)),
        };
        if let Some(b) = b {
            self.li(base, b);
        }
        if atomic && self.chance(60) {
            // mostly aligned, or every atomic would trap
            self.emit(Opcode::AndI, base, base, 0, Val::Const(-8));
        }
        let loads = matches!(op.info().class, Class::Load | Class::LinearLoad | Class::Atomic);
        let v = if loads { self.reg(avoid) } else { self.reg(&[]) };
        let mut end = 0;
        if atomic {
            end = self.reg(&[]);
        }
        if linear {
            end = self.reg(&[avoid, &[SP, base]].concat());
            let at = self.interesting();
            self.li(end, at);
        }
        self.emit(op, v, base, end, imm);
    }

    /// A run of pushes and pops (sp's move is pending across it), from
    /// where sp is or from a boundary.
    fn stack(&mut self, avoid: &[u8]) {
        if !avoid.contains(&SP) && self.chance(25) {
            let k = 8 * self.below(4) as i64;
            let v = pick(self.src, &[Val::StackLimit(k), Val::MemTop(-k)]);
            self.li(SP, v);
        }
        let mut depth = 0i32;
        for _ in 0..1 + self.below(6) {
            if depth > 0 && self.chance(50) {
                let r = if self.chance(10) { SP } else { self.reg(avoid) };
                if avoid.contains(&r) {
                    continue;
                }
                self.emit(Opcode::Pop, r, 0, 0, Val::Const(0));
                depth -= 1;
            } else {
                let r = self.reg(&[]);
                self.emit(Opcode::Push, r, 0, 0, Val::Const(0));
                depth += 1;
            }
            if self.chance(20) {
                // sp seen in between
                let d = self.reg(&[avoid, &[SP]].concat());
                let x = self.reg(&[]);
                self.emit(Opcode::Add, d, x, SP, Val::Const(0));
            }
        }
    }

    /// `li rc, n; li rz, 0; top: ...; subi rc, rc, 1; bne rc, rz, top`, or a
    /// loop that never loops back (`bne rx, rx`): it only weighs its
    /// registers in the translator's choice of host registers.
    fn counted_loop(&mut self, avoid: &[u8], control: bool) {
        let rc = self.reg(&[avoid, &[SP]].concat());
        let rz = self.reg(&[avoid, &[SP, rc]].concat());
        let dead = self.chance(20);
        let n = 1 + self.below(12) as i64;
        self.li(rc, Val::Const(n));
        self.li(rz, Val::Const(0));
        let top = self.prog.label();
        self.prog.bind(top);
        let inner = [avoid, &[rc, rz]].concat();
        self.depth += 1;
        for _ in 0..1 + self.below(4) {
            let may_leave = control && self.chance(30);
            self.snippet(&inner, may_leave);
        }
        self.depth -= 1;
        if dead {
            self.emit(Opcode::Bne, rc, rc, 0, Val::Label(top, 0));
        } else if self.chance(30) {
            self.emit(Opcode::SubI32, rc, rc, 0, Val::Const(1));
            self.emit(Opcode::Bnez, rc, 0, 0, Val::Label(top, 0));
        } else {
            self.emit(Opcode::SubI, rc, rc, 0, Val::Const(1));
            self.emit(Opcode::Bne, rc, rz, 0, Val::Label(top, 0));
        }
    }

    /// A loop that is one block (it branches to its own start) over a few
    /// float registers: the translator keeps them in XMM registers.
    fn float_loop(&mut self, avoid: &[u8]) {
        let rc = self.reg(&[avoid, &[SP]].concat());
        let mut fl = Vec::new();
        for _ in 0..1 + self.below(3) {
            let f = self.reg(&[avoid, &[rc, SP], &fl].concat());
            fl.push(f);
            let bits = pick(self.src, &FLOATS).to_bits() as i64;
            self.li(f, Val::Const(bits));
        }
        let n = 1 + self.below(6) as i64;
        self.li(rc, Val::Const(n));
        let zero = self.reg(&[avoid, &[rc, SP], &fl].concat());
        self.li(zero, Val::Const(0));
        let top = self.prog.label();
        self.prog.bind(top);
        let ops = [
            Opcode::FAdd,
            Opcode::FSub,
            Opcode::FMul,
            Opcode::FDiv,
            Opcode::FSqrt,
            Opcode::IToF,
            Opcode::IToF,
            Opcode::FToI,
            Opcode::FNeg,
            Opcode::FLt,
            Opcode::Mov,
        ];
        for _ in 0..1 + self.below(5) {
            let op = pick(self.src, &ops);
            let d = pick(self.src, &fl);
            let (b, c) = if op == Opcode::IToF { (rc, rc) } else { (pick(self.src, &fl), pick(self.src, &fl)) };
            self.emit(op, d, b, c, Val::Const(0));
        }
        self.emit(Opcode::SubI, rc, rc, 0, Val::Const(1));
        self.emit(Opcode::Blt, zero, rc, 0, Val::Label(top, 0));
    }

    fn call(&mut self, avoid: &[u8]) {
        let n = self.below(self.funcs.len() as u64) as usize;
        let (f, counter) = (self.funcs[n], self.counters[n]);
        if !avoid.contains(&counter) && self.chance(50) {
            let n = 1 + self.below(4) as i64;
            self.li(counter, Val::Const(n));
        }
        if self.chance(70) {
            self.emit(Opcode::Call, 0, 0, 0, Val::Label(f, 0));
        } else {
            let r = self.reg(&[SP]);
            self.li(r, Val::Label(f, 0));
            self.emit(Opcode::CallR, r, 0, 0, Val::Const(0));
        }
    }

    /// A system call with arguments near boundaries; reads may land on an
    /// instruction ahead (stdin holds encoded instructions).
    fn syscall(&mut self, avoid: &[u8]) {
        if avoid.iter().any(|r| [0, 1, 2].contains(r)) {
            return self.alu(avoid);
        }
        let n = pick(self.src, &[1, 2, 2, 3, 4, 5, 9]);
        if n == 1 || n == 2 {
            let at = if n == 2 && self.chance(60) {
                let p = self.prog.label();
                self.patches.push(p);
                Val::Label(p, pick(self.src, &[0, 0, 4, -8]))
            } else {
                self.interesting()
            };
            self.li(1, at);
            let len = pick(self.src, &[0, 1, 8, 8, 16, 100]);
            self.li(2, Val::Const(len));
        }
        self.emit(Opcode::Sys, 0, 0, 0, Val::Const(n));
        self.bind_patch_maybe();
    }

    /// Binds a pending patch label on the next instruction, sometimes.
    fn bind_patch_maybe(&mut self) {
        if !self.patches.is_empty() && self.chance(50) {
            let p = self.patches.remove(0);
            self.prog.bind(p);
            self.alu(&[]);
        }
    }

    /// A store of an encoded instruction into the code ahead.
    fn self_modify(&mut self, avoid: &[u8]) {
        let r = self.reg(&[avoid, &[SP]].concat());
        let base = self.reg(&[avoid, &[SP, r]].concat());
        let bits = u64::from_le_bytes(self.plain_instr().encode());
        self.li(r, Val::Const(bits as i64));
        let p = self.prog.label();
        self.li(base, Val::Const(0));
        let op = pick(self.src, &[Opcode::St64, Opcode::St64, Opcode::St32, Opcode::St8]);
        self.emit(op, r, base, 0, Val::Label(p, 0));
        if self.chance(50) {
            self.alu(avoid);
        }
        self.prog.bind(p);
        self.alu(avoid);
    }

    /// A branch over one simple instruction (the translator's conditional
    /// moves).
    fn if_skip(&mut self, avoid: &[u8]) {
        let ops: Vec<Opcode> = Opcode::ALL.iter().copied().filter(|op| op.info().class == Class::Branch).collect();
        let op = pick(self.src, &ops);
        let (x, y) = (self.reg(&[]), self.reg(&[]));
        let skip = self.prog.label();
        let y = if op.info().format == Format::BranchZ { 0 } else { y };
        self.emit(op, x, y, 0, Val::Label(skip, 0));
        self.alu(avoid);
        if self.chance(30) {
            self.alu(avoid);
        }
        self.prog.bind(skip);
    }

    /// A remainder by 2^k compared with a zero register (the translator
    /// tests the dividend's low bits under a guard).
    fn remainder_test(&mut self, avoid: &[u8]) {
        let no = [avoid, &[SP]].concat();
        let (rz, rr) = (self.reg(&no), self.reg(&no));
        let x = self.reg(&[]);
        self.li(rz, Val::Const(0));
        let by = pick(self.src, &[2, 4, -8, 1 << 20]);
        self.emit(Opcode::RemSI, rr, x, 0, Val::Const(by));
        let over = self.prog.label();
        self.emit(Opcode::Bne, rr, rz, 0, Val::Label(over, 0));
        self.alu(avoid);
        self.prog.bind(over);
    }

    fn division_edge(&mut self, avoid: &[u8]) {
        let no = [avoid, &[SP]].concat();
        let (x, y, d) = (self.reg(&no), self.reg(&no), self.reg(&no));
        let v = pick(self.src, &[i64::MIN, -7, 7, i64::MAX]);
        self.li(x, Val::Const(v));
        let ops = [Opcode::DivS, Opcode::RemS, Opcode::DivU, Opcode::RemU];
        if self.chance(50) {
            let v = pick(self.src, &[0, -1, 1, 2]);
            self.li(y, Val::Const(v));
            let op = pick(self.src, &ops);
            self.emit(op, d, x, y, Val::Const(0));
        } else {
            let imm_ops = [Opcode::DivSI, Opcode::RemSI, Opcode::DivUI, Opcode::RemUI];
            let (op, by) = (pick(self.src, &imm_ops), pick(self.src, &[0, -1, 1, 3, i64::from(i32::MIN)]));
            self.emit(op, d, x, 0, Val::Const(by));
        }
    }
}
