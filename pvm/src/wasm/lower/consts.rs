//! Constants worth a register: a constant an instruction can only read
//! from a register costs a `li` (and a `lih` past 32 bits) at every use;
//! one kept in a value register costs them once in the prologue and again
//! after each call (every call clobbers the registers).
//!
//! The uses are predicted from the operator that takes the constant (the
//! lowering reads the register whenever it has one, so a wrong guess only
//! costs speed): a float operation, a store of it, an operation without
//! an immediate form or with a constant too wide for it, a comparison
//! taking it as its first operand or becoming a branch.

use wasmparser::Operator;

use super::alloc::nesting;
use super::memory::{access, Access};
use super::numeric::{numeric, CmpKind, Num};

/// Per constant value: the weight of its uses (each `li` it saves, ten
/// times more per loop level), and the weight of the calls (each a reload).
pub struct ConstUses {
    pub uses: Vec<(u64, u64)>,
    pub calls: u64,
}

/// The value of a constant operator.
fn value(op: &Operator<'_>) -> Option<u64> {
    Some(match *op {
        Operator::I32Const { value } => u64::from(value as u32),
        Operator::I64Const { value } => value as u64,
        Operator::F32Const { value } => u64::from(value.bits()),
        Operator::F64Const { value } => value.bits(),
        _ => return None,
    })
}

fn fits_i32(v: u64) -> bool {
    i64::from(v as i32) as u64 == v
}

/// True if the constant `v`, pushed right before `rest` (as the second
/// operand of `rest[0]`), is loaded into a register there.
fn second_needs_reg(v: u64, rest: &[Operator<'_>]) -> bool {
    let Some(next) = rest.first() else { return false };
    let fused = rest.get(1).is_some_and(super::stack::fuses_into);
    match numeric(next) {
        Some(Num::Bin { ri: None, .. }) => true,
        Some(Num::Bin { ri: Some(_), wide, swap, .. }) => swap || (wide && !fits_i32(v)),
        Some(Num::Cmp(c)) if fused => !(v == 0 && matches!(c.kind, CmpKind::Eq | CmpKind::Ne)),
        Some(Num::Cmp(c)) => c.set_op().2 || (c.wide && !fits_i32(v)),
        _ => matches!(access(next), Some(Access::Store(..))),
    }
}

/// True if the constant `v`, pushed before a `local.get` and `rest`, is
/// the first operand of `rest[0]` and loaded into a register there.
fn first_needs_reg(rest: &[Operator<'_>]) -> bool {
    let Some(next) = rest.first() else { return false };
    let fused = rest.get(1).is_some_and(super::stack::fuses_into);
    match numeric(next) {
        Some(Num::Bin { commutes, swap, .. }) => !commutes && !swap,
        Some(Num::Cmp(_)) => fused,
        _ => matches!(access(next), Some(Access::Store(..))),
    }
}

/// The predicted register uses of the constants of `ops`.
pub fn uses(ops: &[Operator<'_>]) -> ConstUses {
    let mut uses: Vec<(u64, u64)> = Vec::new();
    let mut calls = 0;
    for ((k, op), (_, w)) in ops.iter().enumerate().zip(nesting(ops)) {
        if matches!(op, Operator::Call { .. } | Operator::CallIndirect { .. }) {
            calls += w;
        }
        let Some(v) = value(op) else { continue };
        let rest = &ops[k + 1..];
        let needs = second_needs_reg(v, rest)
            || (matches!(rest.first(), Some(Operator::LocalGet { .. })) && first_needs_reg(&rest[1..]));
        if needs {
            let cost = if fits_i32(v) { w } else { 2 * w };
            match uses.iter_mut().find(|(x, _)| *x == v) {
                Some(u) => u.1 += cost,
                None => uses.push((v, cost)),
            }
        }
    }
    ConstUses { uses, calls }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::module::{parse, program_features};

    fn uses_of(wat: &str) -> Vec<(u64, u64)> {
        let wasm = wat::parse_str(wat).unwrap();
        let m = parse(&wasm, program_features()).unwrap();
        uses(&m.bodies[0].ops).uses
    }

    #[test]
    fn constants_without_an_immediate_form_are_counted_by_loop_depth() {
        let u = uses_of(
            r#"(module (memory 1) (func (param i64 f64) (result f64)
                (i64.store8 (i32.wrap_i64 (local.get 0)) (i64.const 0))
                (loop
                    (local.set 1 (f64.mul (local.get 1) (f64.const 2)))
                    (br_if 0 (i64.gt_u (local.get 0) (i64.const 7)))
                    (br_if 0 (i64.ne (local.get 0) (i64.const 0))))
                (drop (i64.add (local.get 0) (i64.const 5)))
                (local.get 1)))"#,
        );
        // The stored 0 once, 2.0 (li + lih) in the loop, 7 in a branch;
        // comparing with 0 and adding 5 take no register.
        assert_eq!(u, vec![(0, 1), (2f64.to_bits(), 20), (7, 10)]);
    }

    #[test]
    fn a_comparison_a_select_branches_on_needs_its_constant_in_a_register() {
        let u = uses_of(
            r#"(module (func (param i64) (result i64)
                (loop (local.set 0 (select (local.get 0) (i64.const 1) (i64.lt_u (local.get 0) (i64.const 4)))))
                (local.get 0)))"#,
        );
        // 1 is moved by the select (no register needed), 4 is compared.
        assert_eq!(u, vec![(4, 10)]);
    }
}
