//! Encoding a translated block: the instructions built with iced-x86's
//! `CodeAssembler`, turned into bytes by iced-x86's `Encoder` in two cheap
//! passes instead of its general `BlockEncoder`.
//!
//! A block's code has a simple shape: no RIP-relative data, branches to
//! labels (which `CodeAssembler` records as a branch to the label's id, the
//! labelled instruction carrying that id as its ip) and branches to fixed
//! addresses in the trampoline. So one pass encodes every instruction once,
//! with label branches in their 32-bit form, and picks the 8-bit form for
//! each label branch whose distance already fits: distances only shrink
//! when branches do, so the choice stays right. The second pass lays the
//! block out and encodes only what depends on its position (the branches).
//! `BlockEncoder` iterates to a fixed point and wraps every instruction; on
//! blocks of a few dozen instructions this cuts the encoding time by about
//! two thirds.
//!
//! The layout also keeps every branch, and every compare with the jcc the
//! CPU fuses it with, inside one cache line (NOPs move it to the next one,
//! as `as -mbranches-within-32B-boundaries` does for 32 bytes). On this
//! machine fib ran 0.106-0.142 s depending only on where in their lines
//! its blocks started; with blocks on line starts (`code_memory`), 0.114-
//! 0.117 s without this padding and 0.104-0.106 s with it. A short branch
//! the padding puts out of reach turns near and the layout is redone.

use iced_x86::{Code, Encoder, FlowControl, IcedError, Instruction, Mnemonic, OpKind};

/// A block that cannot be encoded: a translator bug, never a guest's doing.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("iced-x86 cannot encode an instruction: {0}")]
    Iced(#[from] IcedError),
    #[error("label id {0} is out of range (labels are small counters)")]
    LabelId(u64),
    #[error("a branch goes to a label that was never set")]
    UnsetLabel,
    #[error("instruction {0} changed size between the two passes")]
    SizeChanged(usize),
}

/// What a pass needs per instruction.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Offset of its bytes in the first pass's buffer.
    first: usize,
    len: usize,
    /// Instruction index of the label it branches to.
    label: Option<usize>,
    /// Branches to a fixed address (encoded again at its final place).
    fixed_branch: bool,
    /// A label branch in its 8-bit form.
    short: bool,
    /// Its length in its 32-bit form (pass 1).
    near_len: usize,
    /// NOP bytes laid out before it (see `boundary_pad`).
    pad: usize,
    /// The first of a pair laid out as one: a compare and the jcc the CPU
    /// fuses it with, or an exit's count add and its jump.
    fused: bool,
}

/// Reusable buffers of the encoder.
pub struct BlockEncoding {
    encoder: Encoder,
    first: Vec<u8>,
    slots: Vec<Slot>,
    labels: Vec<usize>,
    /// Offset of each instruction in the encoded block (and the block's
    /// length at the end), after `encode`.
    pub offsets: Vec<usize>,
}

impl std::fmt::Debug for BlockEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockEncoding").field("offsets", &self.offsets).finish_non_exhaustive()
    }
}

impl Default for BlockEncoding {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether an instruction transfers control (a db-made exit included:
/// jmp/call rel32, jcc rel32).
fn transfers(i: &Instruction) -> bool {
    if i.code() == Code::DeclareByte {
        let b = |n| if i.declare_data_len() > n { i.get_declare_byte_value(n) } else { 0 };
        return matches!(b(0), 0xe8 | 0xe9) || (b(0) == 0x0f && b(1) & 0xf0 == 0x80);
    }
    i.flow_control() != FlowControl::Next
}

fn is_jcc(i: &Instruction) -> bool {
    if i.code() == Code::DeclareByte {
        return i.declare_data_len() > 1
            && i.get_declare_byte_value(0) == 0x0f
            && i.get_declare_byte_value(1) & 0xf0 == 0x80;
    }
    i.flow_control() == FlowControl::ConditionalBranch
}

/// The `add r13, imm32` of a patchable exit (bytes, see `Emitter::exit_at`):
/// chaining patches its imm32 at a fixed distance before the jump, so the
/// two are laid out as one.
fn is_count_add(i: &Instruction) -> bool {
    i.code() == Code::DeclareByte
        && i.declare_data_len() == 7
        && (0..3).all(|n| i.get_declare_byte_value(n) == [0x49, 0x81, 0xc5][n])
}

/// Instructions the CPU fuses with a following jcc into one operation.
fn fusible(i: &Instruction) -> bool {
    matches!(
        i.mnemonic(),
        Mnemonic::Cmp | Mnemonic::Test | Mnemonic::Add | Mnemonic::Sub | Mnemonic::And | Mnemonic::Inc | Mnemonic::Dec
    )
}

/// NOP bytes that move the `len` bytes of a branch (or fused pair) at
/// address `addr` to the next cache line if they would cross into it.
fn boundary_pad(addr: u64, len: usize) -> usize {
    const LINE: u64 = super::code_memory::LINE as u64;
    let end = addr + len as u64;
    if len > 0 && addr / LINE != (end - 1) / LINE {
        (LINE - addr % LINE) as usize
    } else {
        0
    }
}

/// Appends `n` bytes of multi-byte NOPs (the forms Intel recommends).
fn push_nops(out: &mut Vec<u8>, mut n: usize) {
    const NOPS: [&[u8]; 9] = [
        &[0x90],
        &[0x66, 0x90],
        &[0x0f, 0x1f, 0x00],
        &[0x0f, 0x1f, 0x40, 0x00],
        &[0x0f, 0x1f, 0x44, 0x00, 0x00],
        &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
        &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
        &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
    ];
    while n > 0 {
        let m = n.min(NOPS.len());
        out.extend_from_slice(NOPS[m - 1]);
        n -= m;
    }
}

/// Label ids are small counters; anything larger is an address.
const MAX_LABEL_ID: u64 = 1 << 16;

fn is_branch(i: &Instruction) -> bool {
    i.op0_kind() == OpKind::NearBranch64
}

impl BlockEncoding {
    pub fn new() -> Self {
        BlockEncoding {
            encoder: Encoder::new(64),
            first: Vec::new(),
            slots: Vec::new(),
            labels: Vec::new(),
            offsets: Vec::new(),
        }
    }

    /// Encodes `instrs` (from `CodeAssembler::instructions`) for execution
    /// at `at`, appending the bytes to `out`; `self.offsets` then holds the
    /// offset of every instruction.
    pub fn encode(&mut self, instrs: &[Instruction], at: u64, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        // Labels: the instruction carrying each id.
        self.labels.clear();
        for (k, i) in instrs.iter().enumerate() {
            let id = i.ip();
            if id != 0 {
                if id >= MAX_LABEL_ID {
                    return Err(EncodeError::LabelId(id));
                }
                let id = id as usize;
                if self.labels.len() <= id {
                    self.labels.resize(id + 1, usize::MAX);
                }
                self.labels[id] = k;
            }
        }
        let label_of = |i: &Instruction, labels: &[usize]| {
            if !is_branch(i) || i.near_branch_target() >= MAX_LABEL_ID {
                return Ok(None);
            }
            match labels.get(i.near_branch_target() as usize) {
                Some(&k) if k != usize::MAX => Ok(Some(k)),
                _ => Err(EncodeError::UnsetLabel),
            }
        };
        // Pass 1: every instruction once, label branches in 32-bit form.
        self.first.clear();
        self.slots.clear();
        self.offsets.clear();
        let mut buf = std::mem::take(&mut self.first);
        self.encoder.set_buffer(buf);
        let mut near = 0usize;
        for i in instrs {
            let label = label_of(i, &self.labels)?;
            let mut x = *i;
            let ip = at + near as u64;
            if is_branch(&x) {
                x.as_near_branch();
                if label.is_some() {
                    x.set_near_branch64(ip);
                }
            }
            let first = near;
            let len = self.encoder.encode(&x, ip)?;
            self.slots.push(Slot {
                first,
                len,
                label,
                fixed_branch: is_branch(i) && label.is_none(),
                short: false,
                near_len: len,
                pad: 0,
                fused: false,
            });
            self.offsets.push(near);
            near += len;
        }
        self.offsets.push(near);
        buf = self.encoder.take_buffer();
        // Short forms where the 32-bit layout already fits them.
        for (k, (slot, i)) in self.slots.iter_mut().zip(instrs).enumerate() {
            let Some(t) = slot.label else { continue };
            let mut x = *i;
            x.as_short_branch();
            if x.code() == i.code().as_near_branch() {
                continue; // no short form (a call)
            }
            let (start, end, target) = (self.offsets[k], self.offsets[k + 1], self.offsets[t]);
            let fits = if t > k { target - end <= 127 } else { start + 2 - target <= 128 };
            if fits {
                slot.len = 2; // jcc rel8 and jmp rel8
                slot.short = true;
            }
        }
        for k in 0..instrs.len().saturating_sub(1) {
            let (i, next) = (&instrs[k], &instrs[k + 1]);
            self.slots[k].fused = (fusible(i) && is_jcc(next)) || (is_count_add(i) && transfers(next));
        }
        // Final layout: no branch (or fused pair) across a boundary; a
        // short branch the padding puts out of reach goes back to its
        // 32-bit form, and the layout is done again (shorts only turn near,
        // so this ends).
        loop {
            let mut off = 0usize;
            let mut k = 0;
            while k < self.slots.len() {
                let s = self.slots[k];
                let group = if s.fused {
                    s.len + self.slots[k + 1].len
                } else if transfers(&instrs[k]) {
                    s.len
                } else {
                    0
                };
                let pad = boundary_pad(at + off as u64, group);
                self.slots[k].pad = pad;
                off += pad;
                self.offsets[k] = off;
                off += s.len;
                if s.fused {
                    k += 1;
                    self.slots[k].pad = 0;
                    self.offsets[k] = off;
                    off += self.slots[k].len;
                }
                k += 1;
            }
            self.offsets[self.slots.len()] = off;
            let mut changed = false;
            for k in 0..self.slots.len() {
                let (Some(t), true) = (self.slots[k].label, self.slots[k].short) else { continue };
                let (start, end, target) = (self.offsets[k], self.offsets[k] + 2, self.offsets[t]);
                let fits = if t > k { target - end <= 127 } else { start + 2 - target <= 128 };
                if !fits {
                    self.slots[k].short = false;
                    self.slots[k].len = self.slots[k].near_len;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let off = self.offsets[self.slots.len()];
        // Pass 2: copy, encoding again only what depends on the position.
        let base = out.len();
        out.reserve(off);
        let mut scratch = Vec::new();
        for (k, s) in self.slots.iter().enumerate() {
            push_nops(out, s.pad);
            if s.label.is_none() && !s.fixed_branch && !instrs[k].is_ip_rel_memory_operand() {
                out.extend_from_slice(&buf[s.first..s.first + s.len]);
                continue;
            }
            let mut x = instrs[k];
            let ip = at + self.offsets[k] as u64;
            if let Some(t) = s.label {
                x.set_near_branch64(at + self.offsets[t] as u64);
            }
            if s.short {
                x.as_short_branch();
            } else {
                x.as_near_branch();
            }
            scratch.clear();
            self.encoder.set_buffer(scratch);
            let n = self.encoder.encode(&x, ip)?;
            scratch = self.encoder.take_buffer();
            if n != s.len {
                return Err(EncodeError::SizeChanged(k));
            }
            out.extend_from_slice(&scratch);
        }
        debug_assert_eq!(out.len() - base, off);
        self.first = buf;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use iced_x86::code_asm::*;
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};

    use super::*;

    const AT: u64 = 0x7f00_0000_0000;

    fn decode(code: &[u8]) -> Vec<Instruction> {
        Decoder::with_ip(64, code, AT, DecoderOptions::NONE).into_iter().collect()
    }

    #[test]
    fn short_and_near_label_branches_land_on_their_labels() {
        let mut a = CodeAssembler::new(64).unwrap();
        let mut top = a.create_label();
        let mut far = a.create_label();
        a.set_label(&mut top).unwrap();
        a.add(rax, 1).unwrap();
        a.cmp(rax, 10).unwrap();
        a.jne(far).unwrap();
        a.jl(top).unwrap();
        for _ in 0..40 {
            a.mov(rcx, 0x1234_5678_9abc_def0u64).unwrap();
        }
        a.set_label(&mut far).unwrap();
        a.ret().unwrap();
        let mut enc = BlockEncoding::new();
        let mut out = vec![0xcc];
        enc.encode(a.instructions(), AT, &mut out).unwrap();
        let code = &out[1..];
        let got = decode(code);
        assert_eq!(got.len(), a.instructions().len());
        assert_eq!(got[2].mnemonic(), Mnemonic::Jne);
        assert_eq!(got[2].len(), 6, "a far forward branch stays near");
        assert_eq!(got[2].near_branch_target(), AT + enc.offsets[44] as u64);
        assert_eq!(got[44].mnemonic(), Mnemonic::Ret);
        assert_eq!(got[3].len(), 2, "a close backward branch becomes short");
        assert_eq!(got[3].near_branch_target(), AT);
        assert_eq!(enc.offsets[45], code.len());
    }

    #[test]
    fn fixed_targets_are_reached_from_the_final_position() {
        let target = AT + 0x10_0000;
        let mut a = CodeAssembler::new(64).unwrap();
        let mut skip = a.create_label();
        a.je(skip).unwrap();
        a.jmp(target).unwrap();
        a.set_label(&mut skip).unwrap();
        a.jne(target).unwrap();
        a.db(&[0xe9, 0, 0, 0, 0]).unwrap();
        let mut enc = BlockEncoding::new();
        let mut out = Vec::new();
        enc.encode(a.instructions(), AT, &mut out).unwrap();
        let got = decode(&out);
        assert_eq!(got[0].near_branch_target(), AT + enc.offsets[2] as u64);
        assert_eq!(got[0].len(), 2);
        assert_eq!(got[1].near_branch_target(), target);
        assert_eq!(got[2].near_branch_target(), target);
        assert_eq!(&out[enc.offsets[3]..], &[0xe9, 0, 0, 0, 0]);
    }

    #[test]
    fn branches_and_fused_pairs_never_cross_a_cache_line() {
        // Blocks of movs (10 bytes) put every branch after them somewhere
        // else in the line.
        for movs in 0..14 {
            let mut a = CodeAssembler::new(64).unwrap();
            let mut top = a.create_label();
            a.set_label(&mut top).unwrap();
            for _ in 0..movs {
                a.mov(rcx, 0x1234_5678_9abc_def0u64).unwrap();
            }
            a.cmp(rax, 0x1234_5678).unwrap();
            a.jne(top).unwrap();
            a.db(&[0xe9, 0, 0, 0, 0]).unwrap();
            a.ret().unwrap();
            let mut enc = BlockEncoding::new();
            let mut out = Vec::new();
            enc.encode(a.instructions(), AT, &mut out).unwrap();
            let got: Vec<Instruction> = decode(&out).into_iter().filter(|i| i.mnemonic() != Mnemonic::Nop).collect();
            assert_eq!(got.len(), a.instructions().len());
            let line = |at: u64, len: usize| (at / 64, (at + len as u64 - 1) / 64);
            let (cmp, jne, jmp) = (&got[movs], &got[movs + 1], &got[movs + 2]);
            assert_eq!(line(cmp.ip(), cmp.len()).0, line(jne.ip(), jne.len()).1, "{movs} movs: pair split");
            for i in [jne, jmp] {
                let (first, last) = line(i.ip(), i.len());
                assert_eq!(first, last, "{movs} movs: {i} crosses a line");
            }
            assert_eq!(jne.near_branch_target(), AT);
            assert_eq!(jne.ip(), AT + enc.offsets[movs + 1] as u64);
            assert_eq!(out.len(), enc.offsets[movs + 4]);
        }
    }

    #[test]
    fn an_exits_count_add_stays_right_before_its_jump_wherever_it_falls() {
        for nops in 0..64 {
            let mut a = CodeAssembler::new(64).unwrap();
            for _ in 0..nops {
                a.nop().unwrap();
            }
            a.db(&[0x49, 0x81, 0xc5, 1, 0, 0, 0]).unwrap();
            a.db(&[0xe9, 0, 0, 0, 0]).unwrap();
            let mut enc = BlockEncoding::new();
            let mut out = Vec::new();
            enc.encode(a.instructions(), AT, &mut out).unwrap();
            let (add, jmp) = (enc.offsets[nops], enc.offsets[nops + 1]);
            assert_eq!(jmp, add + 7, "{nops} nops");
            assert_eq!(jmp / 64, (jmp + 4) / 64, "{nops} nops: the jump crosses a line");
            assert_eq!(&out[add..add + 3], &[0x49, 0x81, 0xc5]);
        }
    }

    #[test]
    fn a_short_branch_the_padding_puts_out_of_reach_turns_near() {
        let mut a = CodeAssembler::new(64).unwrap();
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        for _ in 0..6 {
            a.mov(rcx, 0x1234_5678_9abc_def0u64).unwrap();
        }
        a.db(&[0xe9, 0, 0, 0, 0]).unwrap(); // at 60: moves to 64
        for _ in 0..5 {
            a.mov(rcx, 0x1234_5678_9abc_def0u64).unwrap();
        }
        a.add(rcx, 1).unwrap();
        // Unpadded, the pair sits at 119..127 and the jne reaches back to 0
        // in its short form; padded, it would sit at 123..131, crosses, and
        // moves to 128, too far.
        a.cmp(rax, 0x1234_5678).unwrap();
        a.jne(top).unwrap();
        let mut enc = BlockEncoding::new();
        let mut out = Vec::new();
        enc.encode(a.instructions(), AT, &mut out).unwrap();
        assert_eq!((enc.offsets[6], enc.offsets[13], enc.offsets[14]), (64, 128, 134));
        let jne = decode(&out).into_iter().find(|i| i.ip() == AT + 134).unwrap();
        assert_eq!((jne.mnemonic(), jne.len()), (Mnemonic::Jne, 6));
        assert_eq!(jne.near_branch_target(), AT);
    }

    #[test]
    fn a_branch_to_an_unset_label_is_an_error() {
        let mut a = CodeAssembler::new(64).unwrap();
        let nowhere = a.create_label();
        a.jmp(nowhere).unwrap();
        let mut enc = BlockEncoding::new();
        assert!(enc.encode(a.instructions(), AT, &mut Vec::new()).is_err());
    }
}
