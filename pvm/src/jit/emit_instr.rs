//! The translation of each instruction: one exhaustive `match` over the
//! opcode, so no opcode can be forgotten by the translator.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::context::{OFF_SP_BASE, OFF_SP_LIMIT};
use super::emit::{ctx_reg, sp_may_wait, Emitter, Pushed, HOST_POOL16, HOST_POOL32, HOST_POOL8};
use super::magic;
use super::specialize;
use super::translate::HOST_POOL;
use crate::isa::{Class, Instr, Opcode, INSTR_SIZE, SP};

impl Emitter {
    pub(super) fn instr(&mut self, i: &Instr, k: usize, pc: u64) -> Result<(), IcedError> {
        if let Some(d) = specialize::doubling(i, &self.known) {
            return self.instr(&d, k, pc);
        }
        let (a, b, c) = (i.a, i.b, i.c);
        let imm = i.imm;
        // Registers this instruction writes lose their XMM copies (float
        // results set theirs again, and float comparisons drop it
        // themselves, after reading their sources).
        let class = i.op.info().class;
        let own_copy = class.float_result() || class == Class::FloatCompare;
        if let (Some(d), false) = (i.dest(), own_copy) {
            self.forget(d);
        }
        if class.moves_sp() {
            self.forget(SP);
        }
        if !sp_may_wait(i) || (i.op == Opcode::Pop && !self.pops_into_host(i)) {
            self.flush_sp()?;
        }
        if class.accesses_memory() {
            // Its interpret stub, made now: it rewinds to the state before
            // this instruction, which a fault at any of its accesses needs.
            self.interpret_stub(k);
        }
        match i.op {
            Opcode::Nop => {}
            Opcode::Mov => {
                let s = self.get(b, rax)?;
                self.put(a, s)?;
            }
            Opcode::Li => match self.host(a) {
                Some(h) => self.a.mov(h, i64::from(imm))?,
                None => self.a.mov(ctx_reg(a), imm)?,
            },
            Opcode::Lih => {
                self.load(rax, a)?;
                self.a.mov(eax, eax)?;
                self.a.mov(rcx, u64::from(imm as u32) << 32)?;
                self.a.or(rax, rcx)?;
                self.put(a, rax)?;
            }
            Opcode::Add | Opcode::Sub | Opcode::Mul | Opcode::And | Opcode::Or | Opcode::Xor => {
                // Work in the destination's own host register unless it is
                // also the second source.
                let dst = match self.host(a) {
                    Some(h) if a == b || a != c => h,
                    _ => rax,
                };
                self.load(dst, b)?;
                let x = self.get(c, rcx)?;
                self.alu(i.op, dst, x)?;
                self.put(a, dst)?;
            }
            Opcode::AddI | Opcode::SubI | Opcode::MulI | Opcode::AndI | Opcode::OrI | Opcode::XorI => {
                if let (Some(h), true) = (self.host(a), a == b && matches!(i.op, Opcode::AddI | Opcode::SubI)) {
                    if i.op == Opcode::AddI {
                        self.a.add(h, imm)?;
                    } else {
                        self.a.sub(h, imm)?;
                    }
                    return Ok(());
                }
                // Straight into the destination's host register when it has one.
                let dst = self.host(a).unwrap_or(rax);
                let src = self.get(b, rax)?;
                if let Some(add) = self.fused_add(k) {
                    // x * 3 + c and the like: one lea
                    self.skip_next = true;
                    match imm {
                        2 | 4 | 8 => self.a.lea(dst, qword_ptr(src * imm + add))?,
                        _ => self.a.lea(dst, qword_ptr(src + src * (imm - 1) + add))?,
                    }
                    return self.put(a, dst);
                }
                match i.op {
                    Opcode::AddI if src != dst => self.a.lea(dst, qword_ptr(src + imm))?,
                    Opcode::SubI if src != dst && imm != i32::MIN => self.a.lea(dst, qword_ptr(src - imm))?,
                    Opcode::MulI => self.mul_imm(dst, src, imm)?,
                    _ => {
                        if src != dst {
                            self.a.mov(dst, src)?;
                        }
                        self.alu_imm(i.op, dst, imm)?;
                    }
                }
                self.put(a, dst)?;
            }
            Opcode::Shl | Opcode::Shr | Opcode::Sar => {
                self.load(rcx, c)?;
                self.load(rax, b)?;
                match i.op {
                    Opcode::Shl => self.a.shl(rax, cl)?,
                    Opcode::Shr => self.a.shr(rax, cl)?,
                    _ => self.a.sar(rax, cl)?,
                }
                self.put(a, rax)?;
            }
            Opcode::ShlI | Opcode::ShrI | Opcode::SarI => {
                self.load(rax, b)?;
                let n = (imm & 63) as u32;
                match i.op {
                    Opcode::ShlI => self.a.shl(rax, n)?,
                    Opcode::ShrI => self.a.shr(rax, n)?,
                    _ => self.a.sar(rax, n)?,
                }
                self.put(a, rax)?;
            }
            Opcode::Seq | Opcode::Sne | Opcode::Slt | Opcode::Sltu | Opcode::Sle | Opcode::Sleu => {
                self.load(rax, b)?;
                let x = self.get(c, rcx)?;
                self.a.cmp(rax, x)?;
                self.setcc(i.op)?;
                self.put(a, rax)?;
            }
            Opcode::SeqI | Opcode::SneI | Opcode::SltI | Opcode::SltuI | Opcode::SleI | Opcode::SleuI => {
                self.load(rax, b)?;
                self.a.cmp(rax, imm)?;
                self.setcc(i.op)?;
                self.put(a, rax)?;
            }
            Opcode::DivS | Opcode::DivU | Opcode::RemS | Opcode::RemU => {
                self.load(rcx, c)?;
                let stub = self.interpret_stub(k);
                self.a.test(rcx, rcx)?;
                self.a.jz(stub)?;
                self.load(rax, b)?;
                self.divide(i.op, a)?;
            }
            Opcode::DivUI | Opcode::RemUI => {
                let d = i64::from(imm) as u64;
                if d == 0 {
                    let stub = self.interpret_stub(k);
                    return self.a.jmp(stub);
                }
                self.a.mov(rcx, d)?;
                self.load(rax, b)?;
                self.divide(if i.op == Opcode::DivUI { Opcode::DivU } else { Opcode::RemU }, a)?;
            }
            Opcode::DivSI | Opcode::RemSI => {
                if i.op == Opcode::RemSI && self.deferred_remainder(k) {
                    return Ok(());
                }
                let Some(plan) = magic::plan(i64::from(imm)) else {
                    let stub = self.interpret_stub(k);
                    return self.a.jmp(stub);
                };
                if let magic::ConstDiv::Shift { k, negative } = plan {
                    return self.div_rem_pow2(i.op == Opcode::RemSI, a, b, k, negative);
                }
                // From b's own host register where it has one.
                let x = self.get(b, rcx)?;
                self.div_by_constant(plan, x)?;
                if i.op != Opcode::RemSI {
                    return self.put(a, rax);
                }
                // remainder = x - quotient * d (rdx is free again)
                self.mul_imm(rdx, rax, imm)?;
                match self.host(a) {
                    Some(h) if h == x => self.a.sub(h, rdx)?,
                    Some(h) => {
                        self.a.mov(h, x)?;
                        self.a.sub(h, rdx)?;
                    }
                    None => {
                        self.a.mov(rax, x)?;
                        self.a.sub(rax, rdx)?;
                        self.put(a, rax)?;
                    }
                }
            }
            Opcode::FAdd | Opcode::FSub | Opcode::FMul | Opcode::FDiv => {
                let x1 = self.fsrc(b, &[])?;
                let x2 = self.fsrc(c, &[x1])?;
                // Compute in a's copy (or in xmm0 when a is the second
                // source and would be overwritten before it is read).
                let xd = if a == c && a != b {
                    xmm0
                } else {
                    self.xmm_of(a).filter(|_| a == b).unwrap_or_else(|| self.xmm_alloc(a, &[x1, x2]))
                };
                if xd != x1 {
                    self.a.movapd(xd, x1)?;
                }
                match i.op {
                    Opcode::FAdd => self.a.addsd(xd, x2)?,
                    Opcode::FSub => self.a.subsd(xd, x2)?,
                    Opcode::FMul => self.a.mulsd(xd, x2)?,
                    _ => self.a.divsd(xd, x2)?,
                }
                if xd == xmm0 {
                    self.a.movapd(x2, xmm0)?;
                    self.fput(a, x2, k)?;
                } else {
                    self.fput(a, xd, k)?;
                }
            }
            Opcode::FEq | Opcode::FLt | Opcode::FLe => {
                let x1 = self.fsrc(b, &[])?;
                let x2 = self.fsrc(c, &[x1])?;
                match i.op {
                    Opcode::FEq => {
                        self.a.ucomisd(x1, x2)?;
                        self.a.sete(al)?;
                        self.a.setnp(cl)?;
                        self.a.and(al, cl)?;
                    }
                    Opcode::FLt => {
                        self.a.ucomisd(x2, x1)?;
                        self.a.seta(al)?;
                    }
                    _ => {
                        self.a.ucomisd(x2, x1)?;
                        self.a.setae(al)?;
                    }
                }
                self.a.movzx(rax, al)?;
                self.forget(a);
                self.put(a, rax)?;
            }
            Opcode::FSqrt => {
                let x = self.fsrc(b, &[])?;
                let xd = self.xmm_alloc(a, &[x]);
                self.a.sqrtsd(xd, x)?;
                self.fput(a, xd, k)?;
            }
            Opcode::FNeg => {
                self.load(rax, b)?;
                self.a.btc(rax, 63)?;
                self.put(a, rax)?;
            }
            Opcode::IToF => {
                let r = self.get(b, rax)?;
                let xd = self.xmm_alloc(a, &[]);
                self.a.xorps(xd, xd)?; // no false dependency on its old value
                self.a.cvtsi2sd(xd, r)?;
                self.fput(a, xd, k)?;
            }
            Opcode::FToI => self.ftoi(a, b)?,
            Opcode::Ld8U
            | Opcode::Ld8S
            | Opcode::Ld16U
            | Opcode::Ld16S
            | Opcode::Ld32U
            | Opcode::Ld32S
            | Opcode::Ld64 => {
                let n = match i.op {
                    Opcode::Ld8U | Opcode::Ld8S => 1,
                    Opcode::Ld16U | Opcode::Ld16S => 2,
                    Opcode::Ld32U | Opcode::Ld32S => 4,
                    _ => 8,
                };
                let Some(at) = self.address(b, imm, 0, n, k)? else { return Ok(()) };
                let dst = self.host(a).unwrap_or(rax);
                self.guest_access(k);
                match i.op {
                    Opcode::Ld8U => self.a.movzx(dst, byte_ptr(at))?,
                    Opcode::Ld8S => self.a.movsx(dst, byte_ptr(at))?,
                    Opcode::Ld16U => self.a.movzx(dst, word_ptr(at))?,
                    Opcode::Ld16S => self.a.movsx(dst, word_ptr(at))?,
                    Opcode::Ld32U => self.a.mov(eax, dword_ptr(at))?,
                    Opcode::Ld32S => self.a.movsxd(dst, dword_ptr(at))?,
                    _ => self.a.mov(dst, qword_ptr(at))?,
                }
                if i.op == Opcode::Ld32U || dst == rax {
                    self.put(a, rax)?;
                }
            }
            Opcode::St8 | Opcode::St16 | Opcode::St32 | Opcode::St64 => {
                let n = match i.op {
                    Opcode::St8 => 1,
                    Opcode::St16 => 2,
                    Opcode::St32 => 4,
                    _ => 8,
                };
                // A store below the end of the code may overwrite code: the
                // interpreter does it, and the dispatcher invalidates blocks.
                let Some(at) = self.address(b, imm, self.layout.code_end, n, k)? else { return Ok(()) };
                let slot = self.host_slot(a);
                if slot.is_none() {
                    self.a.mov(rcx, ctx_reg(a))?;
                }
                self.guest_access(k);
                match (i.op, slot) {
                    (Opcode::St8, Some(s)) => self.a.mov(byte_ptr(at), HOST_POOL8[s])?,
                    (Opcode::St16, Some(s)) => self.a.mov(word_ptr(at), HOST_POOL16[s])?,
                    (Opcode::St32, Some(s)) => self.a.mov(dword_ptr(at), HOST_POOL32[s])?,
                    (_, Some(s)) => self.a.mov(qword_ptr(at), HOST_POOL[s])?,
                    (_, None) => match i.op {
                        Opcode::St8 => self.a.mov(byte_ptr(at), cl)?,
                        Opcode::St16 => self.a.mov(word_ptr(at), cx)?,
                        Opcode::St32 => self.a.mov(dword_ptr(at), ecx)?,
                        _ => self.a.mov(qword_ptr(at), rcx)?,
                    },
                }
            }
            Opcode::Push => {
                // The value before sp moves (push sp pushes the old sp).
                let v = if a == SP {
                    self.load(rdx, a)?;
                    rdx
                } else {
                    self.get(a, rdx)?
                };
                self.push_room(k)?;
                self.push_value(k, Pushed::Reg(v))?;
            }
            Opcode::Pop => match (self.host(SP), self.host(a)) {
                (Some(h_sp), Some(d)) if self.pops_into_host(i) => {
                    self.pop_room(k, h_sp)?;
                    let top = self.stack_top(h_sp);
                    self.guest_access(k);
                    self.a.mov(d, top)?;
                    self.sp_pending += 8;
                }
                _ => {
                    // (sp is read whole here: its host register took its
                    // pending move above)
                    self.load(rax, SP)?;
                    self.pop_room(k, rax)?;
                    self.guest_access(k);
                    self.a.mov(rcx, qword_ptr(r14 + rax))?;
                    self.a.add(rax, 8)?;
                    self.put(SP, rax)?;
                    self.put(a, rcx)?;
                }
            },
            Opcode::Jmp => self.direct_or_trap(i, k)?,
            Opcode::Beq | Opcode::Bne | Opcode::Blt | Opcode::Bge | Opcode::Bltu | Opcode::Bgeu => {
                if self.if_convert(i, k, pc)? {
                    self.skip_next = true;
                    return Ok(());
                }
                if let Some((dividend, mask)) = specialize::fused_remainder_test(&self.instrs, k, &self.known) {
                    // (remainder == 0 exactly when these bits are)
                    let x = self.get(dividend, rax)?;
                    self.a.test(x, mask)?;
                } else {
                    let x = self.get(a, rax)?;
                    let y = self.get(b, rcx)?;
                    self.a.cmp(x, y)?;
                }
                let target = i.imm as u32 as u64;
                if k > 0 && self.deferred_remainder(k - 1) {
                    let taken = self.remainder_then(k, target)?;
                    self.jcc(i.op, false, taken)?;
                    if k + 1 == self.len {
                        self.direct_exit(pc + INSTR_SIZE, 0)?;
                    } else {
                        debug_assert_eq!(self.counted, k + 1);
                        self.count_segment(k + 1)?;
                    }
                } else if !self.valid_target(target) {
                    // Taking it traps: let the interpreter report that.
                    let stub = self.interpret_stub(k);
                    self.jcc(i.op, false, stub)?;
                    if k + 1 == self.len {
                        self.direct_exit(pc + INSTR_SIZE, 0)?;
                    }
                } else if k + 1 == self.len && target == self.block_pc {
                    // A loop around this very block: jump to its start.
                    self.jcc(i.op, false, self.entry)?;
                    self.direct_exit(pc + INSTR_SIZE, 0)?;
                } else if k + 1 == self.len {
                    // Last instruction: two chainable exits.
                    self.jcc_exit(i.op, target)?;
                    self.direct_exit(pc + INSTR_SIZE, 0)?;
                } else {
                    // A side exit (the count holds this segment, ending
                    // here): taken, one jump to the target's start; not
                    // taken, the block goes on and counts its next segment.
                    debug_assert_eq!(self.counted, k + 1);
                    if target == self.block_pc {
                        self.jcc(i.op, false, self.entry)?;
                    } else {
                        self.jcc_exit(i.op, target)?;
                    }
                    self.count_segment(k + 1)?;
                }
            }
            Opcode::Jr => {
                self.load(rdx, a)?;
                self.lookup(k)?;
                self.a.jmp(qword_ptr(rcx + 8))?;
            }
            Opcode::Call => {
                let target = i.imm as u32 as u64;
                if !self.valid_target(target) {
                    let stub = self.interpret_stub(k);
                    return self.a.jmp(stub);
                }
                let ret_pc = (pc + INSTR_SIZE) as i32;
                self.push_room(k)?;
                self.push_value(k, Pushed::Imm(ret_pc))?;
                self.flush_sp()?;
                if !self.valid_target(pc + INSTR_SIZE) {
                    // A call at the end of the code returns to no
                    // instruction: no host frame, so that the `ret` finds
                    // it out (and traps) as the interpreter's does.
                    return self.direct_exit(target, 0);
                }
                // A host call as well, so that the guest's `ret` becomes a
                // host `ret` the CPU's return predictor gets right: the frame
                // holds the guest return pc (which `ret` checks) under the
                // host return address, whose code goes on at the return pc.
                // Past HOST_FRAMES nested calls, a plain jump.
                let mut deep = self.a.create_label();
                self.a.cmp(rsp, qword_ptr(r15 + OFF_SP_LIMIT))?;
                self.a.jbe(deep)?;
                self.a.push(ret_pc)?;
                self.call_exit(target)?;
                self.direct_exit(pc + INSTR_SIZE, 0)?;
                self.bind(&mut deep)?;
                self.direct_exit(target, 0)?;
            }
            Opcode::CallR => {
                self.load(rdx, a)?;
                self.lookup(k)?;
                self.a.mov(rdx, rcx)?; // push_room uses rcx
                self.push_room(k)?;
                self.push_value(k, Pushed::Imm((pc + INSTR_SIZE) as i32))?;
                self.flush_sp()?;
                self.a.jmp(qword_ptr(rdx + 8))?;
            }
            Opcode::Ret => {
                let top = self.get(SP, rax)?;
                self.pop_room(k, top)?;
                let at = self.stack_top(top);
                self.guest_access(k);
                self.a.mov(rdx, at)?;
                // The host frame of the matching call, if it is on top.
                let mut lookup = self.a.create_label();
                self.a.cmp(rsp, qword_ptr(r15 + OFF_SP_BASE))?;
                self.a.jae(lookup)?;
                self.a.cmp(rdx, qword_ptr(rsp + 8))?;
                self.a.jne(lookup)?;
                self.pop_sp(top)?;
                self.a.ret_1(8)?;
                self.bind(&mut lookup)?;
                self.lookup(k)?;
                self.pop_sp(top)?;
                self.sp_pending = 0;
                self.a.jmp(qword_ptr(rcx + 8))?;
            }
            Opcode::Sys => {
                let stub = self.interpret_stub(k);
                self.a.jmp(stub)?;
            }
        }
        Ok(())
    }
}
