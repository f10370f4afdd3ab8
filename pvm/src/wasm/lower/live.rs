//! Liveness of locals: which locals a function may still read after each
//! operator before it writes them again. A backward dataflow over the
//! structured control flow, repeated until the live sets at the loop
//! headers stop growing.
//!
//! Each tracked local has a bit of a `u64`: a local in register r has bit
//! r (below [`VALUE_REGS`]), and the first locals in the frame have the
//! bits above; locals without a bit are not tracked (always taken as
//! live). Calls use the register bits (a value dead across a call is not
//! saved), the prologue the entry set (a local not live at entry is never
//! read before it is written, so it needs no zeroing).

use wasmparser::Operator;

use super::VALUE_REGS;

/// Passes after which the analysis gives up (every set then covers every
/// tracked local, which is always safe).
const MAX_PASSES: usize = 32;

/// The live sets of one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Liveness {
    /// Per operator: the locals that may be read after it before they are
    /// written.
    pub after: Vec<u64>,
    /// The locals that may be read before they are written.
    pub entry: u64,
}

/// What opened the frame an `end` (or `else`) closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opener {
    Block,
    /// A loop, by its number.
    Loop(usize),
    If,
    Function,
}

/// A frame open during the backward pass.
#[derive(Clone, Copy, Debug)]
struct Open {
    /// Live at the label a branch to the frame reaches.
    label: u64,
    /// Live at the frame's end (where an `if` without `else` falls).
    end: u64,
    /// Live at the start of an `if`'s else arm, once seen.
    else_entry: Option<u64>,
}

/// The opener of every `end` and `else`, and the number of loops.
fn openers(ops: &[Operator<'_>]) -> (Vec<Option<Opener>>, usize) {
    let mut of = vec![None; ops.len()];
    let mut stack = Vec::new();
    let mut loops = 0;
    for (k, op) in ops.iter().enumerate() {
        match op {
            Operator::Block { .. } => stack.push(Opener::Block),
            Operator::If { .. } => stack.push(Opener::If),
            Operator::Loop { .. } => {
                stack.push(Opener::Loop(loops));
                loops += 1;
            }
            Operator::Else => of[k] = stack.last().copied(),
            Operator::End => of[k] = Some(stack.pop().unwrap_or(Opener::Function)),
            _ => {}
        }
    }
    (of, loops)
}

/// The live sets of `ops`, a validated function body; `bit[l]` is the bit
/// of local `l`, if it is tracked.
pub fn analyze(ops: &[Operator<'_>], bit: &[Option<u8>]) -> Liveness {
    let all = bit.iter().flatten().fold(0u64, |m, &b| m | 1 << b);
    let (of, nloops) = openers(ops);
    let mut headers = vec![0u64; nloops];
    let mut after = vec![0u64; ops.len()];
    for _ in 0..MAX_PASSES {
        let (entry, changed) = pass(ops, bit, &of, &mut headers, &mut after);
        if !changed {
            return Liveness { after, entry };
        }
    }
    Liveness { after: vec![all; ops.len()], entry: all }
}

/// One backward pass; true if a loop header's set grew.
fn pass(
    ops: &[Operator<'_>],
    bit: &[Option<u8>],
    of: &[Option<Opener>],
    headers: &mut [u64],
    after: &mut [u64],
) -> (u64, bool) {
    let mask = |l: u32| bit.get(l as usize).copied().flatten().map_or(0, |b| 1u64 << b);
    let mut frames: Vec<Open> = Vec::new();
    let mut opened_loops: Vec<usize> = Vec::new();
    let label = |frames: &[Open], d: u32| frames.len().checked_sub(1 + d as usize).map_or(0, |i| frames[i].label);
    let mut live = 0u64;
    let mut changed = false;
    for k in (0..ops.len()).rev() {
        after[k] = live;
        match ops[k] {
            Operator::End => {
                let opener = of[k].unwrap_or(Opener::Function);
                let label = match opener {
                    Opener::Function => 0,
                    Opener::Block | Opener::If => live,
                    Opener::Loop(n) => {
                        opened_loops.push(n);
                        headers[n]
                    }
                };
                frames.push(Open { label, end: live, else_entry: None });
            }
            Operator::Else => {
                if let Some(f) = frames.last_mut() {
                    f.else_entry = Some(live);
                    live = f.end;
                }
            }
            Operator::If { .. } => {
                if let Some(f) = frames.pop() {
                    live |= f.else_entry.unwrap_or(f.end);
                }
            }
            Operator::Block { .. } => {
                frames.pop();
            }
            Operator::Loop { .. } => {
                frames.pop();
                if let Some(n) = opened_loops.pop() {
                    if live & !headers[n] != 0 {
                        headers[n] |= live;
                        changed = true;
                    }
                }
            }
            Operator::Br { relative_depth } => live = label(&frames, relative_depth),
            Operator::BrIf { relative_depth } => live |= label(&frames, relative_depth),
            Operator::BrTable { ref targets } => {
                live = label(&frames, targets.default());
                for t in targets.targets().flatten() {
                    live |= label(&frames, t);
                }
            }
            Operator::Return | Operator::Unreachable => live = 0,
            Operator::LocalGet { local_index } => live |= mask(local_index),
            Operator::LocalSet { local_index } | Operator::LocalTee { local_index } => live &= !mask(local_index),
            _ => {}
        }
    }
    (live, changed)
}

/// The bit of each local: its register's, or the next free one above the
/// registers for a local in the frame; `None` once the bits run out.
pub fn bits(in_reg: impl Iterator<Item = Option<u8>>) -> Vec<Option<u8>> {
    let mut next = VALUE_REGS as u8;
    in_reg
        .map(|r| match r {
            Some(r) => Some(r),
            None if next < 64 => {
                next += 1;
                Some(next - 1)
            }
            None => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::module::{parse, program_features};

    /// Liveness of the first function of `wat`, every local tracked by
    /// its index.
    fn live_of(wat: &str) -> (Vec<Operator<'static>>, Liveness) {
        let wasm: &'static [u8] = Box::leak(wat::parse_str(wat).unwrap().into_boxed_slice());
        let m = parse(wasm, program_features()).unwrap();
        let body = &m.bodies[0];
        let n = m.func_type(m.imported_funcs as u32).params.len() + body.locals.len();
        let bit: Vec<Option<u8>> = (0..n as u8).map(Some).collect();
        let live = analyze(&body.ops, &bit);
        (body.ops.clone(), live)
    }

    fn after_call(ops: &[Operator<'_>], live: &Liveness) -> u64 {
        let k = ops.iter().position(|op| matches!(op, Operator::Call { .. })).unwrap();
        live.after[k]
    }

    #[test]
    fn a_local_written_before_it_is_read_is_dead_across_a_call() {
        let (ops, live) = live_of(
            r#"(module (func $f (param i64) (result i64) (local i64 i64)
                (local.set 1 (call $f (local.get 0)))
                (local.set 2 (i64.add (local.get 1) (local.get 0)))
                (local.get 2)))"#,
        );
        // After the call: local 0 is read, local 2 is written first, and
        // local 1 is the call's result (written by the set after it).
        assert_eq!(after_call(&ops, &live), 0b001);
        assert_eq!(live.entry, 0b001);
    }

    #[test]
    fn a_value_read_in_the_next_iteration_is_live_across_a_call_in_a_loop() {
        let (ops, live) = live_of(
            r#"(module (func $f (param i64) (result i64) (local i64 i64)
                (loop
                    (local.set 2 (call $f (local.get 1)))
                    (local.set 1 (i64.add (local.get 1) (local.get 2)))
                    (br_if 0 (i32.wrap_i64 (local.get 0))))
                (i64.const 0)))"#,
        );
        // Local 1 is read after the call; local 0 only by the loop's
        // branch, after the call, and again in the next iteration.
        assert_eq!(after_call(&ops, &live), 0b011);
        // Locals 0 and 1 are read before any write (1 in the first
        // iteration): 1 keeps its zeroing.
        assert_eq!(live.entry, 0b011);
    }

    #[test]
    fn a_loop_back_edge_carries_what_the_next_iteration_reads() {
        let (ops, live) = live_of(
            r#"(module (func $f (param i64) (local i64 i64)
                (local.set 1 (i64.const 0))
                (block (loop
                    (call $f (local.get 0))
                    (br_if 1 (i64.eqz (local.get 0)))
                    (local.set 0 (local.get 1))
                    (local.set 2 (i64.const 1))
                    (br 0)))
                (drop (local.get 2))))"#,
        );
        // After the call: 0 is read by the exit test, 1 on the way back
        // round, and 2 at the exit (it is written only on the way round,
        // so the first exit reads its initial zero).
        assert_eq!(after_call(&ops, &live), 0b111);
        assert_eq!(live.entry, 0b101);
    }

    #[test]
    fn both_arms_of_an_if_and_the_branch_targets_are_joined() {
        let (ops, live) = live_of(
            r#"(module (func $f (param i64) (result i64) (local i64 i64 i64)
                (drop (call $f (i64.const 1)))
                (if (i32.wrap_i64 (local.get 0))
                    (then (local.set 1 (local.get 2)))
                    (else (local.set 1 (local.get 3))))
                (local.get 1)))"#,
        );
        assert_eq!(after_call(&ops, &live), 0b1101);
        assert_eq!(live.entry, 0b1101);
    }

    #[test]
    fn code_after_a_return_or_a_branch_reads_nothing() {
        let (ops, live) = live_of(
            r#"(module (func $f (param i64) (result i64) (local i64)
                (drop (call $f (i64.const 1)))
                (block (br 0) (drop (local.get 1)))
                (return (i64.const 2))
                (local.get 0)))"#,
        );
        assert_eq!(after_call(&ops, &live), 0);
        assert_eq!(live.entry, 0);
    }

    #[test]
    fn frame_locals_get_the_bits_above_the_registers() {
        let b = bits([Some(3), None, Some(0), None].into_iter());
        assert_eq!(b, vec![Some(3), Some(12), Some(0), Some(13)]);
        assert_eq!(bits(std::iter::repeat_n(None, 60)).iter().flatten().count(), 52);
    }
}
