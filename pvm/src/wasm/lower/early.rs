//! Early exits before the frame: a function that starts with a block
//! testing its parameters and returning (what `if (n < 2) return n;`
//! becomes) runs that block before the prologue, so the path that returns
//! at once allocates no frame and checks no stack.
//!
//! The block qualifies if it reads only parameters that stay in the
//! registers they arrive in, constants and numeric results in registers,
//! and branches only out of itself or returns (values pushed by
//! `local.get` and constants are not written anywhere): nothing in it touches the
//! frame, the locals the prologue zeroes or the constants it loads.

use wasmparser::{BlockType, Operator};

use super::alloc::Allocation;
use super::numeric::numeric;
use super::Loc;

/// Index of the operator after the leading block's `end` if the block
/// qualifies (the prologue is emitted there), else `None`.
pub fn prefix_end(ops: &[Operator<'_>], heights: &[u32], a: &Allocation, nparams: usize) -> Option<usize> {
    if !matches!(ops.first(), Some(Operator::Block { blockty: BlockType::Empty })) {
        return None;
    }
    for (k, op) in ops.iter().enumerate().skip(1) {
        let ok = match *op {
            Operator::End => return Some(k + 1),
            Operator::LocalGet { local_index } => {
                let l = local_index as usize;
                l < nparams && a.locals.get(l) == Some(&Loc::Reg(l as u8))
            }
            Operator::I32Const { .. } | Operator::I64Const { .. } => true,
            Operator::F32Const { .. } | Operator::F64Const { .. } => true,
            Operator::BrIf { relative_depth: 0 } | Operator::Return => true,
            // Its result (if it is not forwarded) goes to a register that
            // holds no parameter the prologue has yet to move.
            ref other => {
                let d = (heights[k] as usize).checked_sub(1)?;
                let free = |r: u8| usize::from(r) >= nparams || a.locals[usize::from(r)] == Loc::Reg(r);
                numeric(other).is_some() && matches!(a.homes.get(d), Some(&Loc::Reg(r)) if free(r))
            }
        };
        if !ok {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::isa::Opcode;
    use crate::wasm::lower::tests::lowered;

    const FIB: &str = r#"(module (func $f (param i64) (result i64)
        (block (br_if 0 (i64.ge_s (local.get 0) (i64.const 2))) (return (local.get 0)))
        (i64.add (call $f (i64.sub (local.get 0) (i64.const 1))) (call $f (i64.sub (local.get 0) (i64.const 2))))))"#;

    #[test]
    fn an_early_return_on_the_parameters_comes_before_the_frame() {
        let code = lowered(FIB);
        let ops: Vec<Opcode> = code.iter().map(|i| i.op).collect();
        assert_eq!(ops[..4], [Opcode::Li, Opcode::Bge, Opcode::Ret, Opcode::SubI]);
    }

    #[test]
    fn a_leading_block_that_writes_a_local_or_calls_waits_for_the_frame() {
        for body in ["(local.set 1 (local.get 0))", "(drop (call $f (local.get 0)))", "(drop (local.get 1))"] {
            let wat = format!(
                "(module (func $f (param i64) (result i64) (local i64)
                    (block (br_if 0 (i64.ge_s (local.get 0) (i64.const 2))) {body})
                    (call $f (local.get 1))))"
            );
            let code = lowered(&wat);
            assert_eq!(code[0].op, Opcode::SubI, "{body}");
        }
    }

    #[test]
    fn a_leading_block_must_not_overwrite_a_parameter_the_prologue_moves() {
        // Parameter 1 is never read: the prologue stores r1 in the frame,
        // and depth 0's home is r1.
        let code = lowered(
            r#"(module (func $f (param i64 i64) (result i64)
                (block (br_if 0 (i64.ge_s (i64.mul (local.get 0) (local.get 0)) (i64.const 2))))
                (call $f (local.get 0) (local.get 0))))"#,
        );
        assert_eq!(code[0].op, Opcode::SubI);
    }
}
