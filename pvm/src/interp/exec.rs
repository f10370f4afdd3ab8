//! The interpreter's loop. It handles only what an instruction does when
//! it succeeds; every way out (a trap, the fuel, a block boundary, a
//! thread operation, the end of the program) leaves the loop with an
//! [`Exit`] and is handled once, after it. That keeps the loop small enough
//! for its state (the slot index, the instructions left) to stay in registers.

use std::io::Write;

use super::{trap_at, InterpStats, Interpreter, Outcome, UNDECODABLE};
use crate::disasm;
use crate::isa::{DecodeError, Instr, Opcode, INSTR_SIZE, SP};
use crate::machine::{sys, Machine, Rmw, SysIo, Syscall};
use crate::semantics as sem;
use crate::trap::TrapKind;

/// Why the loop stopped.
enum Exit {
    /// Before the instruction at the slot index (fuel, a block boundary).
    Paused,
    /// The instruction at the slot index traps, nothing of it retired.
    Trap(TrapKind),
    /// The slot index is no instruction (`usize::MAX`: `m.pc` is not one).
    OffCode,
    /// Before a thread operation (or a jacketed blocking call).
    ThreadOp,
    /// The program ended (`sys exit`, `sys return`).
    Ended(Outcome),
}

impl Interpreter {
    /// The interpreter loop: `None` when it stopped at `fuel`, or with
    /// `BLOCK` at the end of a block, or with `KICK` after a code write or
    /// at a block boundary after a kick, before the next instruction.
    pub(super) fn exec<const STATS: bool, const TRACE: bool, const BLOCK: bool, const KICK: bool>(
        &mut self,
        m: &mut Machine,
        io: &mut dyn SysIo,
        fuel: u64,
        stats: &mut InterpStats,
        trace: &mut dyn Write,
    ) -> Option<Outcome> {
        if STATS && stats.histogram.len() < 256 {
            stats.histogram.resize(256, 0);
        }
        let base = self.code_start;
        let mut idx = if m.is_code_addr(m.pc) { ((m.pc - base) / INSTR_SIZE) as usize } else { usize::MAX };
        // What may still retire, counted down in a register: the retired
        // count is written back from it on the way out.
        let budget = fuel.saturating_sub(m.retired);
        let mut left = budget;
        macro_rules! pc {
            () => {
                base + idx as u64 * INSTR_SIZE
            };
        }
        macro_rules! trap {
            ($kind:expr) => {
                break Exit::Trap($kind)
            };
        }
        macro_rules! tryt {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(kind) => trap!(kind),
                }
            };
        }
        let exit = loop {
            let Some(op) = self.slots.get(idx).map(|s| s.op) else {
                break Exit::OffCode;
            };
            if left == 0 {
                break Exit::Paused;
            }
            // The fields are read where an arm needs them, not all here:
            // reading all six before the match cost every instruction ~10%.
            macro_rules! slot {
                () => {
                    self.slots[idx]
                };
            }
            macro_rules! a {
                () => {
                    usize::from(slot!().a & 15)
                };
            }
            macro_rules! b {
                () => {
                    usize::from(slot!().b & 15)
                };
            }
            macro_rules! c {
                () => {
                    usize::from(slot!().c & 15)
                };
            }
            macro_rules! imm {
                () => {
                    slot!().imm as i64 as u64
                };
            }
            let ends_block = (BLOCK || KICK) && op.info().ends_superblock();
            let before = if TRACE { m.regs } else { [0; 16] };
            let mut next = idx + 1;
            macro_rules! branch {
                ($cond:expr) => {
                    if $cond {
                        let Ok(t) = usize::try_from(slot!().imm) else {
                            trap!(TrapKind::BadJumpTarget(self.encoded_target(idx)));
                        };
                        next = t;
                    }
                };
            }
            macro_rules! jump_to {
                ($addr:expr) => {{
                    let t: u64 = $addr;
                    if !m.is_code_addr(t) {
                        trap!(TrapKind::BadJumpTarget(t));
                    }
                    next = ((t - base) / INSTR_SIZE) as usize;
                }};
            }
            macro_rules! load {
                ($n:literal, $ext:expr) => {{
                    let v = tryt!(m.load::<$n>(m.regs[b!()].wrapping_add(imm!())));
                    m.regs[a!()] = $ext(v);
                }};
            }
            macro_rules! linear_load {
                ($n:literal, $ext:expr) => {{
                    let addr = tryt!(sem::linear_address(m.regs[b!()], slot!().imm, $n, m.regs[c!()]));
                    let v = tryt!(m.load::<$n>(addr));
                    m.regs[a!()] = $ext(v);
                }};
            }
            macro_rules! linear_store {
                ($n:literal) => {{
                    let addr = tryt!(sem::linear_address(m.regs[b!()], slot!().imm, $n, m.regs[c!()]));
                    let v = m.regs[a!()];
                    tryt!(m.store::<$n>(addr, v));
                    if m.touches_code(addr, $n) {
                        self.code_written(m, addr, $n);
                    }
                }};
            }
            macro_rules! atomic {
                ($rmw:expr) => {{
                    let addr = m.regs[b!()].wrapping_add(imm!());
                    m.regs[a!()] = tryt!(m.atomic(addr, $rmw));
                    if m.touches_code(addr, 8) {
                        self.code_written(m, addr, 8);
                    }
                }};
            }
            macro_rules! store {
                ($n:literal) => {{
                    let (addr, v) = (m.regs[b!()].wrapping_add(imm!()), m.regs[a!()]);
                    tryt!(m.store::<$n>(addr, v));
                    if m.touches_code(addr, $n) {
                        self.code_written(m, addr, $n);
                    }
                }};
            }
            match op {
                Opcode::Nop => {}
                Opcode::Mov => m.regs[a!()] = m.regs[b!()],
                Opcode::Li => m.regs[a!()] = imm!(),
                Opcode::Lih => m.regs[a!()] = sem::lih(m.regs[a!()], slot!().imm),
                Opcode::Add => m.regs[a!()] = sem::add(m.regs[b!()], m.regs[c!()]),
                Opcode::Sub => m.regs[a!()] = sem::sub(m.regs[b!()], m.regs[c!()]),
                Opcode::Mul => m.regs[a!()] = sem::mul(m.regs[b!()], m.regs[c!()]),
                Opcode::DivS => m.regs[a!()] = tryt!(sem::div_s(m.regs[b!()], m.regs[c!()])),
                Opcode::DivU => m.regs[a!()] = tryt!(sem::div_u(m.regs[b!()], m.regs[c!()])),
                Opcode::RemS => m.regs[a!()] = tryt!(sem::rem_s(m.regs[b!()], m.regs[c!()])),
                Opcode::RemU => m.regs[a!()] = tryt!(sem::rem_u(m.regs[b!()], m.regs[c!()])),
                Opcode::And => m.regs[a!()] = m.regs[b!()] & m.regs[c!()],
                Opcode::Or => m.regs[a!()] = m.regs[b!()] | m.regs[c!()],
                Opcode::Xor => m.regs[a!()] = m.regs[b!()] ^ m.regs[c!()],
                Opcode::Shl => m.regs[a!()] = sem::shl(m.regs[b!()], m.regs[c!()]),
                Opcode::Shr => m.regs[a!()] = sem::shr(m.regs[b!()], m.regs[c!()]),
                Opcode::Sar => m.regs[a!()] = sem::sar(m.regs[b!()], m.regs[c!()]),
                Opcode::Seq => m.regs[a!()] = sem::seq(m.regs[b!()], m.regs[c!()]),
                Opcode::Sne => m.regs[a!()] = sem::sne(m.regs[b!()], m.regs[c!()]),
                Opcode::Slt => m.regs[a!()] = sem::slt(m.regs[b!()], m.regs[c!()]),
                Opcode::Sltu => m.regs[a!()] = sem::sltu(m.regs[b!()], m.regs[c!()]),
                Opcode::Sle => m.regs[a!()] = sem::sle(m.regs[b!()], m.regs[c!()]),
                Opcode::Sleu => m.regs[a!()] = sem::sleu(m.regs[b!()], m.regs[c!()]),
                Opcode::AddI => m.regs[a!()] = sem::add(m.regs[b!()], imm!()),
                Opcode::SubI => m.regs[a!()] = sem::sub(m.regs[b!()], imm!()),
                Opcode::MulI => m.regs[a!()] = sem::mul(m.regs[b!()], imm!()),
                Opcode::DivSI => m.regs[a!()] = tryt!(sem::div_s_imm(m.regs[b!()], imm!())),
                Opcode::DivUI => m.regs[a!()] = tryt!(sem::div_u(m.regs[b!()], imm!())),
                Opcode::RemSI => m.regs[a!()] = tryt!(sem::rem_s_imm(m.regs[b!()], imm!())),
                Opcode::RemUI => m.regs[a!()] = tryt!(sem::rem_u(m.regs[b!()], imm!())),
                Opcode::AndI => m.regs[a!()] = m.regs[b!()] & imm!(),
                Opcode::OrI => m.regs[a!()] = m.regs[b!()] | imm!(),
                Opcode::XorI => m.regs[a!()] = m.regs[b!()] ^ imm!(),
                Opcode::ShlI => m.regs[a!()] = sem::shl(m.regs[b!()], imm!()),
                Opcode::ShrI => m.regs[a!()] = sem::shr(m.regs[b!()], imm!()),
                Opcode::SarI => m.regs[a!()] = sem::sar(m.regs[b!()], imm!()),
                Opcode::SeqI => m.regs[a!()] = sem::seq(m.regs[b!()], imm!()),
                Opcode::SneI => m.regs[a!()] = sem::sne(m.regs[b!()], imm!()),
                Opcode::SltI => m.regs[a!()] = sem::slt(m.regs[b!()], imm!()),
                Opcode::SltuI => m.regs[a!()] = sem::sltu(m.regs[b!()], imm!()),
                Opcode::SleI => m.regs[a!()] = sem::sle(m.regs[b!()], imm!()),
                Opcode::SleuI => m.regs[a!()] = sem::sleu(m.regs[b!()], imm!()),
                Opcode::Rotl => m.regs[a!()] = sem::rotl(m.regs[b!()], m.regs[c!()]),
                Opcode::Rotr => m.regs[a!()] = sem::rotr(m.regs[b!()], m.regs[c!()]),
                Opcode::RotlI => m.regs[a!()] = sem::rotl(m.regs[b!()], imm!()),
                Opcode::Clz => m.regs[a!()] = sem::clz(m.regs[b!()]),
                Opcode::Ctz => m.regs[a!()] = sem::ctz(m.regs[b!()]),
                Opcode::Popcnt => m.regs[a!()] = sem::popcnt(m.regs[b!()]),
                Opcode::Sext8 => m.regs[a!()] = sem::sext8(m.regs[b!()]),
                Opcode::Sext16 => m.regs[a!()] = sem::sext16(m.regs[b!()]),
                Opcode::Sext32 => m.regs[a!()] = sem::sext32(m.regs[b!()]),
                Opcode::Zext32 => m.regs[a!()] = sem::zext32(m.regs[b!()]),
                Opcode::Sext8To32 => m.regs[a!()] = sem::sext8_32(m.regs[b!()]),
                Opcode::Sext16To32 => m.regs[a!()] = sem::sext16_32(m.regs[b!()]),
                Opcode::Add32 => m.regs[a!()] = sem::add32(m.regs[b!()], m.regs[c!()]),
                Opcode::Sub32 => m.regs[a!()] = sem::sub32(m.regs[b!()], m.regs[c!()]),
                Opcode::Mul32 => m.regs[a!()] = sem::mul32(m.regs[b!()], m.regs[c!()]),
                Opcode::And32 => m.regs[a!()] = sem::and32(m.regs[b!()], m.regs[c!()]),
                Opcode::Or32 => m.regs[a!()] = sem::or32(m.regs[b!()], m.regs[c!()]),
                Opcode::Xor32 => m.regs[a!()] = sem::xor32(m.regs[b!()], m.regs[c!()]),
                Opcode::Shl32 => m.regs[a!()] = sem::shl32(m.regs[b!()], m.regs[c!()]),
                Opcode::Shr32 => m.regs[a!()] = sem::shr32(m.regs[b!()], m.regs[c!()]),
                Opcode::Sar32 => m.regs[a!()] = sem::sar32(m.regs[b!()], m.regs[c!()]),
                Opcode::Rotl32 => m.regs[a!()] = sem::rotl32(m.regs[b!()], m.regs[c!()]),
                Opcode::Rotr32 => m.regs[a!()] = sem::rotr32(m.regs[b!()], m.regs[c!()]),
                Opcode::Seq32 => m.regs[a!()] = sem::seq32(m.regs[b!()], m.regs[c!()]),
                Opcode::Sne32 => m.regs[a!()] = sem::sne32(m.regs[b!()], m.regs[c!()]),
                Opcode::Slt32 => m.regs[a!()] = sem::slt32(m.regs[b!()], m.regs[c!()]),
                Opcode::Sltu32 => m.regs[a!()] = sem::sltu32(m.regs[b!()], m.regs[c!()]),
                Opcode::Sle32 => m.regs[a!()] = sem::sle32(m.regs[b!()], m.regs[c!()]),
                Opcode::Sleu32 => m.regs[a!()] = sem::sleu32(m.regs[b!()], m.regs[c!()]),
                Opcode::Clz32 => m.regs[a!()] = sem::clz32(m.regs[b!()]),
                Opcode::Ctz32 => m.regs[a!()] = sem::ctz32(m.regs[b!()]),
                Opcode::Popcnt32 => m.regs[a!()] = sem::popcnt32(m.regs[b!()]),
                Opcode::AddI32 => m.regs[a!()] = sem::add32(m.regs[b!()], imm!()),
                Opcode::SubI32 => m.regs[a!()] = sem::sub32(m.regs[b!()], imm!()),
                Opcode::MulI32 => m.regs[a!()] = sem::mul32(m.regs[b!()], imm!()),
                Opcode::AndI32 => m.regs[a!()] = sem::and32(m.regs[b!()], imm!()),
                Opcode::OrI32 => m.regs[a!()] = sem::or32(m.regs[b!()], imm!()),
                Opcode::XorI32 => m.regs[a!()] = sem::xor32(m.regs[b!()], imm!()),
                Opcode::ShlI32 => m.regs[a!()] = sem::shl32(m.regs[b!()], imm!()),
                Opcode::ShrI32 => m.regs[a!()] = sem::shr32(m.regs[b!()], imm!()),
                Opcode::SarI32 => m.regs[a!()] = sem::sar32(m.regs[b!()], imm!()),
                Opcode::RotlI32 => m.regs[a!()] = sem::rotl32(m.regs[b!()], imm!()),
                Opcode::SeqI32 => m.regs[a!()] = sem::seq32(m.regs[b!()], imm!()),
                Opcode::SneI32 => m.regs[a!()] = sem::sne32(m.regs[b!()], imm!()),
                Opcode::SltI32 => m.regs[a!()] = sem::slt32(m.regs[b!()], imm!()),
                Opcode::SltuI32 => m.regs[a!()] = sem::sltu32(m.regs[b!()], imm!()),
                Opcode::SleI32 => m.regs[a!()] = sem::sle32(m.regs[b!()], imm!()),
                Opcode::SleuI32 => m.regs[a!()] = sem::sleu32(m.regs[b!()], imm!()),
                Opcode::DivST => m.regs[a!()] = tryt!(sem::div_st(m.regs[b!()], m.regs[c!()])),
                Opcode::DivS32 => m.regs[a!()] = tryt!(sem::div_s32(m.regs[b!()], m.regs[c!()])),
                Opcode::DivU32 => m.regs[a!()] = tryt!(sem::div_u32(m.regs[b!()], m.regs[c!()])),
                Opcode::RemS32 => m.regs[a!()] = tryt!(sem::rem_s32(m.regs[b!()], m.regs[c!()])),
                Opcode::RemU32 => m.regs[a!()] = tryt!(sem::rem_u32(m.regs[b!()], m.regs[c!()])),
                Opcode::FMin => m.regs[a!()] = sem::fmin(m.regs[b!()], m.regs[c!()]),
                Opcode::FMax => m.regs[a!()] = sem::fmax(m.regs[b!()], m.regs[c!()]),
                Opcode::FFloor => m.regs[a!()] = sem::ffloor(m.regs[b!()]),
                Opcode::FCeil => m.regs[a!()] = sem::fceil(m.regs[b!()]),
                Opcode::FTrunc => m.regs[a!()] = sem::ftrunc(m.regs[b!()]),
                Opcode::FNearest => m.regs[a!()] = sem::fnearest(m.regs[b!()]),
                Opcode::FNe => m.regs[a!()] = sem::fne(m.regs[b!()], m.regs[c!()]),
                Opcode::FAbs => m.regs[a!()] = sem::fabs(m.regs[b!()]),
                Opcode::FCopysign => m.regs[a!()] = sem::fcopysign(m.regs[b!()], m.regs[c!()]),
                Opcode::FAdd32 => m.regs[a!()] = sem::fadd32(m.regs[b!()], m.regs[c!()]),
                Opcode::FSub32 => m.regs[a!()] = sem::fsub32(m.regs[b!()], m.regs[c!()]),
                Opcode::FMul32 => m.regs[a!()] = sem::fmul32(m.regs[b!()], m.regs[c!()]),
                Opcode::FDiv32 => m.regs[a!()] = sem::fdiv32(m.regs[b!()], m.regs[c!()]),
                Opcode::FSqrt32 => m.regs[a!()] = sem::fsqrt32(m.regs[b!()]),
                Opcode::FMin32 => m.regs[a!()] = sem::fmin32(m.regs[b!()], m.regs[c!()]),
                Opcode::FMax32 => m.regs[a!()] = sem::fmax32(m.regs[b!()], m.regs[c!()]),
                Opcode::FAbs32 => m.regs[a!()] = sem::fabs32(m.regs[b!()]),
                Opcode::FNeg32 => m.regs[a!()] = sem::fneg32(m.regs[b!()]),
                Opcode::FCopysign32 => m.regs[a!()] = sem::fcopysign32(m.regs[b!()], m.regs[c!()]),
                Opcode::FFloor32 => m.regs[a!()] = sem::ffloor32(m.regs[b!()]),
                Opcode::FCeil32 => m.regs[a!()] = sem::fceil32(m.regs[b!()]),
                Opcode::FTrunc32 => m.regs[a!()] = sem::ftrunc32(m.regs[b!()]),
                Opcode::FNearest32 => m.regs[a!()] = sem::fnearest32(m.regs[b!()]),
                Opcode::FEq32 => m.regs[a!()] = sem::feq32(m.regs[b!()], m.regs[c!()]),
                Opcode::FNe32 => m.regs[a!()] = sem::fne32(m.regs[b!()], m.regs[c!()]),
                Opcode::FLt32 => m.regs[a!()] = sem::flt32(m.regs[b!()], m.regs[c!()]),
                Opcode::FLe32 => m.regs[a!()] = sem::fle32(m.regs[b!()], m.regs[c!()]),
                Opcode::I32TruncF32S => m.regs[a!()] = tryt!(sem::i32_trunc_f32_s(m.regs[b!()])),
                Opcode::I32TruncF32U => m.regs[a!()] = tryt!(sem::i32_trunc_f32_u(m.regs[b!()])),
                Opcode::I32TruncF64S => m.regs[a!()] = tryt!(sem::i32_trunc_f64_s(m.regs[b!()])),
                Opcode::I32TruncF64U => m.regs[a!()] = tryt!(sem::i32_trunc_f64_u(m.regs[b!()])),
                Opcode::I64TruncF32S => m.regs[a!()] = tryt!(sem::i64_trunc_f32_s(m.regs[b!()])),
                Opcode::I64TruncF32U => m.regs[a!()] = tryt!(sem::i64_trunc_f32_u(m.regs[b!()])),
                Opcode::I64TruncF64S => m.regs[a!()] = tryt!(sem::i64_trunc_f64_s(m.regs[b!()])),
                Opcode::I64TruncF64U => m.regs[a!()] = tryt!(sem::i64_trunc_f64_u(m.regs[b!()])),
                Opcode::I32TruncSatF32S => m.regs[a!()] = sem::i32_trunc_sat_f32_s(m.regs[b!()]),
                Opcode::I32TruncSatF32U => m.regs[a!()] = sem::i32_trunc_sat_f32_u(m.regs[b!()]),
                Opcode::I32TruncSatF64S => m.regs[a!()] = sem::i32_trunc_sat_f64_s(m.regs[b!()]),
                Opcode::I32TruncSatF64U => m.regs[a!()] = sem::i32_trunc_sat_f64_u(m.regs[b!()]),
                Opcode::I64TruncSatF32S => m.regs[a!()] = sem::i64_trunc_sat_f32_s(m.regs[b!()]),
                Opcode::I64TruncSatF32U => m.regs[a!()] = sem::i64_trunc_sat_f32_u(m.regs[b!()]),
                Opcode::I64TruncSatF64U => m.regs[a!()] = sem::i64_trunc_sat_f64_u(m.regs[b!()]),
                Opcode::F32ConvertI32S => m.regs[a!()] = sem::f32_convert_i32_s(m.regs[b!()]),
                Opcode::F32ConvertI32U => m.regs[a!()] = sem::f32_convert_i32_u(m.regs[b!()]),
                Opcode::F32ConvertI64S => m.regs[a!()] = sem::f32_convert_i64_s(m.regs[b!()]),
                Opcode::F32ConvertI64U => m.regs[a!()] = sem::f32_convert_i64_u(m.regs[b!()]),
                Opcode::F64ConvertI32S => m.regs[a!()] = sem::f64_convert_i32_s(m.regs[b!()]),
                Opcode::F64ConvertI32U => m.regs[a!()] = sem::f64_convert_i32_u(m.regs[b!()]),
                Opcode::F64ConvertI64U => m.regs[a!()] = sem::f64_convert_i64_u(m.regs[b!()]),
                Opcode::F32DemoteF64 => m.regs[a!()] = sem::f32_demote_f64(m.regs[b!()]),
                Opcode::F64PromoteF32 => m.regs[a!()] = sem::f64_promote_f32(m.regs[b!()]),
                Opcode::Lw8U => linear_load!(1, |v| v),
                Opcode::Lw8S => linear_load!(1, sem::sext8),
                Opcode::Lw16U => linear_load!(2, |v| v),
                Opcode::Lw16S => linear_load!(2, sem::sext16),
                Opcode::Lw32U => linear_load!(4, |v| v),
                Opcode::Lw32S => linear_load!(4, sem::sext32),
                Opcode::Lw64 => linear_load!(8, |v| v),
                Opcode::Lw8S32 => linear_load!(1, sem::sext8_32),
                Opcode::Lw16S32 => linear_load!(2, sem::sext16_32),
                Opcode::Sw8 => linear_store!(1),
                Opcode::Sw16 => linear_store!(2),
                Opcode::Sw32 => linear_store!(4),
                Opcode::Sw64 => linear_store!(8),
                Opcode::Blt32 => branch!(sem::slt32(m.regs[a!()], m.regs[b!()]) != 0),
                Opcode::Bge32 => branch!(sem::slt32(m.regs[a!()], m.regs[b!()]) == 0),
                Opcode::Beqz => branch!(m.regs[a!()] == 0),
                Opcode::Bnez => branch!(m.regs[a!()] != 0),
                Opcode::Trap if slot!().a == UNDECODABLE => {
                    let bytes = m.fetch(pc!()).unwrap_or([0xff; 8]);
                    trap!(TrapKind::InvalidInstruction(
                        Instr::decode(bytes).err().unwrap_or(DecodeError::UnknownOpcode(bytes[0]))
                    ))
                }
                Opcode::Trap => trap!(TrapKind::Raised(slot!().imm as u32)),
                Opcode::Spawn
                | Opcode::Join
                | Opcode::Yield
                | Opcode::TExit
                | Opcode::Tid
                | Opcode::Wait
                | Opcode::Wake => {
                    // The scheduler performs it, from the state before it.
                    break Exit::ThreadOp;
                }
                Opcode::Cas => atomic!(Rmw::Cas { expected: m.regs[a!()], new: m.regs[c!()] }),
                Opcode::XAdd => atomic!(Rmw::Add(m.regs[c!()])),
                Opcode::XChg => atomic!(Rmw::Swap(m.regs[c!()])),
                Opcode::Fence => std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst),
                Opcode::FAdd => m.regs[a!()] = sem::fadd(m.regs[b!()], m.regs[c!()]),
                Opcode::FSub => m.regs[a!()] = sem::fsub(m.regs[b!()], m.regs[c!()]),
                Opcode::FMul => m.regs[a!()] = sem::fmul(m.regs[b!()], m.regs[c!()]),
                Opcode::FDiv => m.regs[a!()] = sem::fdiv(m.regs[b!()], m.regs[c!()]),
                Opcode::FEq => m.regs[a!()] = sem::feq(m.regs[b!()], m.regs[c!()]),
                Opcode::FLt => m.regs[a!()] = sem::flt(m.regs[b!()], m.regs[c!()]),
                Opcode::FLe => m.regs[a!()] = sem::fle(m.regs[b!()], m.regs[c!()]),
                Opcode::FSqrt => m.regs[a!()] = sem::fsqrt(m.regs[b!()]),
                Opcode::FNeg => m.regs[a!()] = sem::fneg(m.regs[b!()]),
                Opcode::IToF => m.regs[a!()] = sem::itof(m.regs[b!()]),
                Opcode::FToI => m.regs[a!()] = sem::ftoi(m.regs[b!()]),
                Opcode::Ld8U => load!(1, |v| v),
                Opcode::Ld8S => load!(1, sem::sext8),
                Opcode::Ld16U => load!(2, |v| v),
                Opcode::Ld16S => load!(2, sem::sext16),
                Opcode::Ld32U => load!(4, |v| v),
                Opcode::Ld32S => load!(4, sem::sext32),
                Opcode::Ld64 => load!(8, |v| v),
                Opcode::St8 => store!(1),
                Opcode::St16 => store!(2),
                Opcode::St32 => store!(4),
                Opcode::St64 => store!(8),
                Opcode::Push => {
                    let v = m.regs[a!()];
                    tryt!(m.push(v));
                    if m.touches_code(m.regs[usize::from(SP)], 8) {
                        let sp = m.regs[usize::from(SP)];
                        self.code_written(m, sp, 8);
                    }
                }
                Opcode::Pop => m.regs[a!()] = tryt!(m.pop()),
                Opcode::Jmp => branch!(true),
                Opcode::Beq => branch!(m.regs[a!()] == m.regs[b!()]),
                Opcode::Bne => branch!(m.regs[a!()] != m.regs[b!()]),
                Opcode::Blt => branch!(sem::lt(m.regs[a!()], m.regs[b!()])),
                Opcode::Bge => branch!(sem::ge(m.regs[a!()], m.regs[b!()])),
                Opcode::Bltu => branch!(m.regs[a!()] < m.regs[b!()]),
                Opcode::Bgeu => branch!(m.regs[a!()] >= m.regs[b!()]),
                Opcode::Jr => jump_to!(m.regs[a!()]),
                Opcode::Call => {
                    let Ok(t) = usize::try_from(slot!().imm) else {
                        trap!(TrapKind::BadJumpTarget(self.encoded_target(idx)));
                    };
                    tryt!(m.push(pc!() + INSTR_SIZE));
                    if m.touches_code(m.regs[usize::from(SP)], 8) {
                        let sp = m.regs[usize::from(SP)];
                        self.code_written(m, sp, 8);
                    }
                    next = t;
                }
                Opcode::CallR => {
                    let target = m.regs[a!()];
                    if !m.is_code_addr(target) {
                        trap!(TrapKind::BadJumpTarget(target));
                    }
                    tryt!(m.push(pc!() + INSTR_SIZE));
                    if m.touches_code(m.regs[usize::from(SP)], 8) {
                        let sp = m.regs[usize::from(SP)];
                        self.code_written(m, sp, 8);
                    }
                    next = ((target - base) / INSTR_SIZE) as usize;
                }
                Opcode::Ret => {
                    let sp = m.regs[usize::from(SP)];
                    let t = tryt!(m.load::<8>(sp));
                    if !m.is_code_addr(t) {
                        trap!(TrapKind::BadJumpTarget(t));
                    }
                    m.regs[usize::from(SP)] = sp.wrapping_add(8);
                    next = ((t - base) / INSTR_SIZE) as usize;
                }
                Opcode::Sys if self.defer_blocking && matches!(slot!().imm, sys::SLEEP | sys::READ) => {
                    // A jacketed blocking call: the scheduler decides.
                    break Exit::ThreadOp;
                }
                Opcode::Sys => {
                    m.pc = pc!();
                    match self.syscall(m, io, slot!().imm) {
                        Ok(None) => {}
                        Ok(Some(end)) => {
                            left -= 1;
                            if STATS {
                                stats.histogram[op as usize] += 1;
                            }
                            break Exit::Ended(end);
                        }
                        Err(kind) => break Exit::Trap(kind),
                    }
                }
            }
            if STATS {
                stats.histogram[op as usize] += 1;
            }
            if TRACE {
                let pc = pc!();
                let changed: Vec<String> = (0..16)
                    .filter(|&k| m.regs[k] != before[k])
                    .map(|k| format!("{}={:#x}", disasm::reg(k as u8), m.regs[k]))
                    .collect();
                let text = disasm::describe(m.fetch(pc));
                let _ = writeln!(trace, "{pc:#08x}  {text:<28} {}", changed.join(" "));
            }
            left -= 1;
            let boundary = next != idx + 1 || ends_block;
            idx = next;
            if (BLOCK && boundary) || (KICK && (!self.code_writes.is_empty() || (boundary && self.kicked()))) {
                break Exit::Paused;
            }
        };
        m.retired += budget - left;
        stats.redecodes = self.redecodes;
        match exit {
            Exit::Paused => {
                m.pc = pc!();
                None
            }
            Exit::Trap(kind) => {
                m.pc = pc!();
                Some(Outcome::Trapped(trap_at(m, kind, m.pc)))
            }
            Exit::OffCode => {
                if idx != usize::MAX {
                    m.pc = pc!();
                }
                Some(Outcome::Trapped(trap_at(m, TrapKind::BadJumpTarget(m.pc), m.pc)))
            }
            Exit::ThreadOp => {
                m.pc = pc!();
                Some(Outcome::ThreadOp)
            }
            Exit::Ended(end) => Some(end),
        }
    }

    /// `sys n` with `m.pc` at it: `Some` if the program ends there.
    #[inline(never)]
    fn syscall(&mut self, m: &mut Machine, io: &mut dyn SysIo, n: i32) -> Result<Option<Outcome>, TrapKind> {
        match m.syscall(io, n)? {
            Syscall::Exit(status) => return Ok(Some(Outcome::Exited(status))),
            Syscall::Return => return Ok(Some(Outcome::Returned)),
            // A read into the code section is a store into code.
            Syscall::Wrote { addr, len } if m.touches_code(addr, len) => self.code_written(m, addr, len),
            Syscall::Wrote { .. } | Syscall::Done => {}
        }
        Ok(None)
    }
}
