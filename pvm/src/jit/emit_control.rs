//! The translation of control transfers: branches (side exits, loops,
//! conditional moves, deferred remainders), jumps, calls as host calls,
//! returns through their host frames, and `sys` (the interpreter's).

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::block::r32;
use super::context::{OFF_SP_BASE, OFF_SP_LIMIT};
use super::emit::{Emitter, Pushed};
use super::ops::{Compare, Cond, Width};
use crate::isa::{BranchOp, CallOp, Instr, JumpOp, ReturnOp, SystemOp, INSTR_SIZE, SP};

impl Emitter {
    /// Conditional branches: side exits, loops to the block's own start,
    /// the block's two last exits, conditional moves, deferred remainders.
    pub(super) fn branch_instr(&mut self, op: BranchOp, i: &Instr, k: usize, pc: u64) -> Result<(), IcedError> {
        let step = self.plan.steps[k];
        let (cond, compare) = Cond::of_branch(op);
        {
            {
                if step.if_converted {
                    return self.if_convert(cond, compare, i, k);
                }
                if let Some((dividend, mask)) = step.remainder_test {
                    // (remainder == 0 exactly when these bits are)
                    let x = self.get(dividend, rax)?;
                    self.a.test(x, mask)?;
                } else {
                    self.compare(compare, i)?;
                }
                let target = i.imm as u32 as u64;
                if k > 0 && self.plan.steps[k - 1].deferred_remainder {
                    let taken = self.remainder_then(k, target)?;
                    cond.jcc(&mut self.a, taken)?;
                    if k + 1 == self.plan.len() {
                        self.direct_exit(pc + INSTR_SIZE, 0)?;
                    } else {
                        debug_assert_eq!(self.counted, k + 1);
                        self.count_segment(k + 1)?;
                    }
                } else if !self.valid_target(target) {
                    // Taking it traps: let the interpreter report that.
                    let stub = self.interpret_stub(k);
                    cond.jcc(&mut self.a, stub)?;
                    if k + 1 == self.plan.len() {
                        self.direct_exit(pc + INSTR_SIZE, 0)?;
                    }
                } else if k + 1 == self.plan.len() && target == self.plan.pc {
                    // A loop around this very block: jump to its start.
                    cond.jcc(&mut self.a, self.entry)?;
                    self.direct_exit(pc + INSTR_SIZE, 0)?;
                } else if k + 1 == self.plan.len() {
                    // Last instruction: two chainable exits.
                    self.jcc_exit(cond, target)?;
                    self.direct_exit(pc + INSTR_SIZE, 0)?;
                } else {
                    // A side exit (the count holds this segment, ending
                    // here): taken, one jump to the target's start; not
                    // taken, the block goes on and counts its next segment.
                    debug_assert_eq!(self.counted, k + 1);
                    if target == self.plan.pc {
                        cond.jcc(&mut self.a, self.entry)?;
                    } else {
                        self.jcc_exit(cond, target)?;
                    }
                    self.count_segment(k + 1)?;
                }
            }
        }
        Ok(())
    }

    /// Sets the flags for a branch (or a conditional move) on `i`.
    pub(super) fn compare(&mut self, compare: Compare, i: &Instr) -> Result<(), IcedError> {
        let x = self.get(i.a, rax)?;
        match compare {
            Compare::Zero => self.a.test(x, x),
            Compare::Regs(width) => {
                let y = self.get(i.b, rcx)?;
                match width {
                    Width::W64 => self.a.cmp(x, y),
                    Width::W32 => self.a.cmp(r32(x), r32(y)),
                }
            }
        }
    }

    /// `jmp` and `jr` (through the lookup table).
    pub(super) fn jump_instr(&mut self, op: JumpOp, i: &Instr, k: usize) -> Result<(), IcedError> {
        let a = i.a;
        match op {
            JumpOp::Jmp => self.direct_or_trap(i, k)?,
            JumpOp::Jr => {
                self.load(rdx, a)?;
                self.lookup(k)?;
                self.a.jmp(qword_ptr(rcx + 8))?;
            }
        }
        Ok(())
    }

    /// `call` (a host call too) and `callr`.
    pub(super) fn call_instr(&mut self, op: CallOp, i: &Instr, k: usize, pc: u64) -> Result<(), IcedError> {
        let a = i.a;
        match op {
            CallOp::Call => {
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
            CallOp::CallR => {
                self.load(rdx, a)?;
                self.lookup(k)?;
                self.a.mov(rdx, rcx)?; // push_room uses rcx
                self.push_room(k)?;
                self.push_value(k, Pushed::Imm((pc + INSTR_SIZE) as i32))?;
                self.flush_sp()?;
                self.a.jmp(qword_ptr(rdx + 8))?;
            }
        }
        Ok(())
    }

    /// `ret`, through the host frame of its call when it matches.
    pub(super) fn return_instr(&mut self, op: ReturnOp, k: usize) -> Result<(), IcedError> {
        match op {
            ReturnOp::Ret => {
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
        }
        Ok(())
    }

    /// `sys` and `trap`: the interpreter performs them.
    pub(super) fn system_instr(&mut self, op: SystemOp, k: usize) -> Result<(), IcedError> {
        match op {
            SystemOp::Sys | SystemOp::Trap => {
                let stub = self.interpret_stub(k);
                self.a.jmp(stub)?;
            }
        }
        Ok(())
    }
}
