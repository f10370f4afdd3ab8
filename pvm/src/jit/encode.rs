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

use iced_x86::{Encoder, IcedError, Instruction, OpKind};

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
            self.slots.push(Slot { first, len, label, fixed_branch: is_branch(i) && label.is_none(), short: false });
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
        // Final layout.
        let mut off = 0usize;
        for (k, s) in self.slots.iter().enumerate() {
            self.offsets[k] = off;
            off += s.len;
        }
        self.offsets[self.slots.len()] = off;
        // Pass 2: copy, encoding again only what depends on the position.
        let base = out.len();
        out.reserve(off);
        let mut scratch = Vec::new();
        for (k, s) in self.slots.iter().enumerate() {
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
    fn a_branch_to_an_unset_label_is_an_error() {
        let mut a = CodeAssembler::new(64).unwrap();
        let nowhere = a.create_label();
        a.jmp(nowhere).unwrap();
        let mut enc = BlockEncoding::new();
        assert!(enc.encode(a.instructions(), AT, &mut Vec::new()).is_err());
    }
}
