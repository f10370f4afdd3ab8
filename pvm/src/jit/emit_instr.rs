//! The translation of each instruction: what every instruction needs first
//! (its registers' XMM copies dropped, sp's pending move given where it
//! must be, its interpret stub made), then one exhaustive `match` over its
//! class, whose emitter matches exhaustively over the class's own opcodes
//! (`emit_int`, `emit_float`, `emit_mem`, `emit_control`): no opcode can
//! be forgotten by the translator.

use iced_x86::IcedError;

use super::emit::{sp_may_wait, Emitter};
use crate::isa::{Class, Instr, Kind, Opcode, SP};

impl Emitter {
    /// Translates instruction k of the block, at guest `pc` (or what the
    /// plan puts in its place).
    pub(super) fn instr(&mut self, k: usize, pc: u64) -> Result<(), IcedError> {
        let i = self.plan.steps[k].rewritten.unwrap_or(self.plan.instrs[k]);
        self.translate_instr(&i, k, pc)
    }

    fn translate_instr(&mut self, i: &Instr, k: usize, pc: u64) -> Result<(), IcedError> {
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
        match i.op.kind() {
            Kind::Move(op) => self.move_instr(op, i),
            Kind::Int(op) => self.int_instr(op, i, k),
            Kind::Div(op) => self.div_instr(op, i, k),
            Kind::Float(op) => self.float_instr(op, i, k),
            Kind::FloatCompare(op) => self.float_compare(op, i),
            Kind::FloatBits(op) => self.float_bits(op, i),
            Kind::IntToFloat(op) => self.int_to_float(op, i, k),
            Kind::FloatToInt(op) => self.float_to_int(op, i),
            Kind::Float32(op) => self.float32_instr(op, i, k),
            Kind::Convert(op) => self.convert_instr(op, i, k),
            Kind::Load(op) => self.load_instr(op, i, k),
            Kind::LinearLoad(op) => self.linear_load(op, i, k),
            Kind::LinearStore(op) => self.linear_store(op, i, k),
            Kind::Store(op) => self.store_instr(op, i, k),
            Kind::Stack(op) => self.stack_instr(op, i, k),
            Kind::Branch(op) => self.branch_instr(op, i, k, pc),
            Kind::Jump(op) => self.jump_instr(op, i, k),
            Kind::Call(op) => self.call_instr(op, i, k, pc),
            Kind::Return(op) => self.return_instr(op, k),
            Kind::System(op) => self.system_instr(op, k),
            Kind::Thread(op) => self.thread_instr(op, k),
            Kind::Atomic(op) => self.atomic_instr(op, i, k),
            Kind::Fence(op) => self.fence_instr(op),
        }
    }
}
