//! Linear-memory loads and stores (one `lw`/`sw` each, checked against
//! r14, the memory's end), `memory.size` and `memory.grow`.

use wasmparser::{MemArg, MemArgTarget, Operator};

use super::stack::Operand;
use super::{FuncLower, LowerError, LIN, S1, S2};
use crate::isa::Opcode;
use crate::wasm::code::Reloc;

/// A load or a store of linear memory.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    Load(Opcode, MemArg),
    Store(Opcode, MemArg),
}

/// The access `op` makes, if it is a load or a store. i32 and f32 loads
/// zero-extend, as i32 and f32 values live.
pub fn access(op: &Operator<'_>) -> Option<Access> {
    use Opcode as O;
    use Operator as W;
    Some(match *op {
        W::I32Load { memarg } | W::F32Load { memarg } | W::I64Load32U { memarg } => Access::Load(O::Lw32U, memarg),
        W::I64Load { memarg } | W::F64Load { memarg } => Access::Load(O::Lw64, memarg),
        W::I32Load8S { memarg } => Access::Load(O::Lw8S32, memarg),
        W::I32Load8U { memarg } | W::I64Load8U { memarg } => Access::Load(O::Lw8U, memarg),
        W::I32Load16S { memarg } => Access::Load(O::Lw16S32, memarg),
        W::I32Load16U { memarg } | W::I64Load16U { memarg } => Access::Load(O::Lw16U, memarg),
        W::I64Load8S { memarg } => Access::Load(O::Lw8S, memarg),
        W::I64Load16S { memarg } => Access::Load(O::Lw16S, memarg),
        W::I64Load32S { memarg } => Access::Load(O::Lw32S, memarg),
        W::I32Store { memarg } | W::F32Store { memarg } | W::I64Store32 { memarg } => Access::Store(O::Sw32, memarg),
        W::I64Store { memarg } | W::F64Store { memarg } => Access::Store(O::Sw64, memarg),
        W::I32Store8 { memarg } | W::I64Store8 { memarg } => Access::Store(O::Sw8, memarg),
        W::I32Store16 { memarg } | W::I64Store16 { memarg } => Access::Store(O::Sw16, memarg),
        _ => return None,
    })
}

/// The memory a memarg names (only memories pass validation here).
fn memory_of(m: &MemArg) -> u32 {
    match m.target {
        MemArgTarget::Memory(i) | MemArgTarget::Array(i) => i,
    }
}

impl FuncLower<'_, '_> {
    pub(super) fn memory_access(&mut self, access: Access) -> Result<(), LowerError> {
        match access {
            Access::Load(op, m) => {
                let addr = self.pop();
                let t = self.target();
                let ra = self.reg(addr, S2);
                let reloc = Reloc::Linear { mem: memory_of(&m), offset: m.offset };
                self.write(t, |f, rd| f.code.emit_reloc(op, rd, ra, LIN, reloc));
                self.push_result(t);
            }
            Access::Store(op, m) => {
                let v = self.pop();
                let addr = self.pop();
                let rv = self.reg(v, S1);
                let ra = self.reg(addr, S2);
                self.code.emit_reloc(op, rv, ra, LIN, Reloc::Linear { mem: memory_of(&m), offset: m.offset });
            }
        }
        Ok(())
    }

    pub(super) fn memory_size(&mut self, mem: u32) {
        let t = self.target();
        self.write(t, |f, rd| {
            f.code.emit_reloc(Opcode::SubI, rd, LIN, 0, Reloc::Linear { mem, offset: 0 });
            f.emit(Opcode::ShrI, rd, rd, 0, 16);
        });
        self.push_result(t);
    }

    /// `memory.grow`: the old size in pages, or -1 (as an i32) past the
    /// maximum; r14 and the memory's descriptor move to the new end.
    pub(super) fn memory_grow(&mut self, mem: u32) {
        let Some(slot) = self.env.memories.get(mem as usize).copied() else { return };
        let delta = self.pop();
        let rx = self.reg(delta, S2);
        let fail = self.code.label();
        let done = self.code.label();
        self.emit(Opcode::ShlI, S2, rx, 0, 16);
        self.emit(Opcode::Add, S2, S2, LIN, 0);
        self.code.emit_reloc(Opcode::Li, S1, 0, 0, Reloc::Linear { mem, offset: slot.max_pages << 16 });
        self.code.branch(Opcode::Bltu, S1, S2, fail);
        self.code.emit_reloc(Opcode::SubI, S1, LIN, 0, Reloc::Linear { mem, offset: 0 });
        self.emit(Opcode::ShrI, S1, S1, 0, 16);
        self.emit(Opcode::Mov, LIN, S2, 0, 0);
        self.emit(Opcode::Li, S2, 0, 0, 0);
        self.emit(Opcode::St64, LIN, S2, 0, slot.desc as i32);
        let home = self.a.homes[self.stack.len()];
        self.mov(home, Operand::Loc(super::Loc::Reg(S1)));
        self.code.branch(Opcode::Jmp, 0, 0, done);
        self.code.bind(fail);
        self.mov(home, Operand::Const(u64::from(u32::MAX)));
        self.code.bind(done);
        self.stack.push(super::stack::Entry::Home);
    }
}
