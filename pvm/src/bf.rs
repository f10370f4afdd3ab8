//! A Brainfuck front end: compiles Brainfuck to pvm code, so third-party
//! programs run as guest programs on the same engines.
//!
//! 30000-byte tape (`TAPE_LEN`), 8-bit wrapping cells, `,` at end of input
//! leaves the cell unchanged. With optimisation on (the default), runs of
//! `+ - < >` fold into one instruction and `[-]`/`[+]` become a store of 0.

use crate::image::{Image, Section, CODE_BASE};
use crate::isa::{Instr, Opcode, INSTR_SIZE};
use crate::machine::sys;

/// Tape cells.
pub const TAPE_LEN: u64 = 30_000;

/// Errors of the front end.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BfError {
    #[error("unmatched '[' at byte {0}")]
    UnmatchedOpen(usize),
    #[error("unmatched ']' at byte {0}")]
    UnmatchedClose(usize),
}

const PTR: u8 = 1; // tape pointer (also the read/write syscall address)
const LEN: u8 = 2; // syscall length, always 1
const CELL: u8 = 3; // cell value
const ZERO: u8 = 4; // constant 0

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add(i32),
    Move(i32),
    Clear,
    Out,
    In,
    Open,
    Close,
}

fn parse(source: &[u8], optimize: bool) -> Vec<(Op, usize)> {
    let mut ops: Vec<(Op, usize)> = Vec::new();
    let mut i = 0;
    while i < source.len() {
        let op = match source[i] {
            b'+' => Op::Add(1),
            b'-' => Op::Add(-1),
            b'>' => Op::Move(1),
            b'<' => Op::Move(-1),
            b'.' => Op::Out,
            b',' => Op::In,
            b'[' => {
                if optimize && matches!(source.get(i..i + 3), Some(b"[-]" | b"[+]")) {
                    ops.push((Op::Clear, i));
                    i += 3;
                    continue;
                }
                Op::Open
            }
            b']' => Op::Close,
            _ => {
                i += 1;
                continue;
            }
        };
        match (optimize, ops.last_mut(), op) {
            (true, Some((Op::Add(n), _)), Op::Add(d)) => *n += d,
            (true, Some((Op::Move(n), _)), Op::Move(d)) => *n += d,
            _ => ops.push((op, i)),
        }
        i += 1;
    }
    ops
}

/// Compiles Brainfuck source to an image.
pub fn compile(source: &[u8], optimize: bool) -> Result<Image, BfError> {
    let ops = parse(source, optimize);
    let tape = (CODE_BASE + (ops.len() as u64 * 3 + 8) * INSTR_SIZE).next_multiple_of(16);
    let mut code = vec![
        Instr::new(Opcode::Li, PTR, 0, 0, tape as i32),
        Instr::new(Opcode::Li, LEN, 0, 0, 1),
        Instr::new(Opcode::Li, ZERO, 0, 0, 0),
    ];
    let mut open: Vec<(usize, usize)> = Vec::new(); // (code index, source position)
    let at = |k: usize| (CODE_BASE + k as u64 * INSTR_SIZE) as i32;
    for &(op, pos) in &ops {
        match op {
            Op::Add(n) => {
                code.push(Instr::new(Opcode::Ld8U, CELL, PTR, 0, 0));
                code.push(Instr::new(Opcode::AddI, CELL, CELL, 0, n));
                code.push(Instr::new(Opcode::St8, CELL, PTR, 0, 0));
            }
            Op::Move(n) => code.push(Instr::new(Opcode::AddI, PTR, PTR, 0, n)),
            Op::Clear => code.push(Instr::new(Opcode::St8, ZERO, PTR, 0, 0)),
            Op::Out => code.push(Instr::new(Opcode::Sys, 0, 0, 0, sys::WRITE)),
            Op::In => code.push(Instr::new(Opcode::Sys, 0, 0, 0, sys::READ)),
            Op::Open => {
                open.push((code.len(), pos));
                code.push(Instr::new(Opcode::Ld8U, CELL, PTR, 0, 0));
                code.push(Instr::new(Opcode::Beq, CELL, ZERO, 0, 0)); // patched at ']'
            }
            Op::Close => {
                let (start, _) = open.pop().ok_or(BfError::UnmatchedClose(pos))?;
                code.push(Instr::new(Opcode::Ld8U, CELL, PTR, 0, 0));
                code.push(Instr::new(Opcode::Bne, CELL, ZERO, 0, at(start + 2)));
                code[start + 1].imm = at(code.len());
            }
        }
    }
    if let Some(&(_, pos)) = open.last() {
        return Err(BfError::UnmatchedOpen(pos));
    }
    code.push(Instr::new(Opcode::Li, 1, 0, 0, 0));
    code.push(Instr::new(Opcode::Sys, 0, 0, 0, sys::EXIT));
    let bytes: Vec<u8> = code.iter().flat_map(Instr::encode).collect();
    debug_assert!(CODE_BASE + bytes.len() as u64 <= tape);
    let tape_section = Section { addr: tape, bytes: vec![0; TAPE_LEN as usize] };
    Ok(Image::new(CODE_BASE, Section { addr: CODE_BASE, bytes }, vec![tape_section]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_runs_and_clears_only_when_optimising() {
        let ops = parse(b"+++>>-[-]<", true);
        assert_eq!(
            ops.iter().map(|o| o.0).collect::<Vec<_>>(),
            [Op::Add(3), Op::Move(2), Op::Add(-1), Op::Clear, Op::Move(-1)]
        );
        assert_eq!(parse(b"++[-]", false).len(), 5);
    }

    #[test]
    fn unmatched_brackets_are_errors() {
        assert_eq!(compile(b"+]", true).unwrap_err(), BfError::UnmatchedClose(1));
        assert_eq!(compile(b"[[]", true).unwrap_err(), BfError::UnmatchedOpen(0));
    }
}
