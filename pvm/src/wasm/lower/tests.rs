//! Lowering whole functions: what the code of small functions looks like.

use super::*;
use crate::isa::Instr;
use crate::wasm::module::{parse, program_features};

/// The instructions of the first function of `wat` (no imports, memories,
/// tables or mutable globals).
pub(super) fn lowered(wat: &str) -> Vec<Instr> {
    let wasm = wat::parse_str(wat).unwrap();
    let m = parse(&wasm, program_features()).unwrap();
    let env = Env {
        module: &m,
        type_ids: (1..=m.types.len() as u32).collect(),
        funcs: vec![Callee::Local; m.bodies.len()],
        globals: Vec::new(),
        memories: Vec::new(),
        tables: Vec::new(),
        cross_instance: false,
    };
    let mut code = Code::new(0x1000);
    lower_function(&env, &mut code, 0).unwrap();
    code.instrs
}

fn ops(code: &[Instr]) -> Vec<Opcode> {
    code.iter().map(|i| i.op).collect()
}

fn count(code: &[Instr], op: Opcode) -> usize {
    code.iter().filter(|i| i.op == op).count()
}

#[test]
fn an_identity_operation_costs_nothing_and_a_returned_result_goes_to_r0() {
    // (After the stack check: the frame has slots for operand depths.)
    let code = lowered("(module (func (param i64) (result i64) (i64.add (local.get 0) (i64.const 0))))");
    assert_eq!(ops(&code[3..5]), vec![Opcode::AddI, Opcode::Ret]);
    let code = lowered("(module (func (param i32 i32) (result i32) (i32.sub (local.get 1) (local.get 0))))");
    assert_eq!(ops(&code[3..6]), vec![Opcode::Sub32, Opcode::AddI, Opcode::Ret]);
    assert_eq!((code[3].a, code[3].b, code[3].c), (0, 1, 0));
}

#[test]
fn a_call_saves_only_what_is_read_after_it() {
    // Local 1 is the call's result: only local 0 (r0) is saved.
    let code = lowered(
        r#"(module (func $f (param i64) (result i64) (local i64)
            (local.set 1 (call $f (local.get 0)))
            (i64.add (local.get 1) (local.get 0))))"#,
    );
    assert_eq!((count(&code, Opcode::St64), count(&code, Opcode::Ld64)), (1, 1));
    assert_eq!(code.iter().find(|i| i.op == Opcode::St64).map(|i| i.a), Some(0));
    // In a loop, local 1 is read in the next iteration: saved too.
    let code = lowered(
        r#"(module (func $f (param i64) (result i64) (local i64)
            (loop
                (drop (call $f (local.get 0)))
                (local.set 1 (i64.add (local.get 1) (i64.const 1)))
                (br_if 0 (i64.eqz (local.get 1))))
            (local.get 0)))"#,
    );
    assert_eq!((count(&code, Opcode::St64), count(&code, Opcode::Ld64)), (2, 2));
}

#[test]
fn a_call_whose_results_are_returned_saves_nothing_and_returns_at_once() {
    let code = lowered(
        r#"(module (func $f (param i64 i64) (result i64)
            (call $f (local.get 1) (local.get 0))))"#,
    );
    assert_eq!(count(&code, Opcode::St64), 0);
    let call = code.iter().position(|i| i.op == Opcode::Call).unwrap();
    assert_eq!(ops(&code[call + 1..call + 3]), vec![Opcode::AddI, Opcode::Ret]);
}

#[test]
fn only_locals_read_before_written_are_zeroed() {
    let code = lowered(
        r#"(module (func (param i32) (result i64) (local i64 i64)
            (local.set 2 (i64.const 9))
            (if (local.get 0) (then (local.set 1 (local.get 2))))
            (i64.add (local.get 1) (local.get 2))))"#,
    );
    // Local 1 is zeroed (the if may skip its write), local 2 is not: its
    // only `li` is the constant 9 (r13 gets the stack limit).
    let lis: Vec<i32> = code.iter().filter(|i| i.op == Opcode::Li && i.a != S2).map(|i| i.imm).collect();
    assert_eq!(lis, vec![0, 9]);
}

#[test]
fn a_wrap_is_free_only_before_an_operation_on_the_low_32_bits() {
    let wrapped = |body: &str| {
        let code = lowered(&format!("(module (func (param i64) (result i32) (local i32) {body}))"));
        count(&code, Opcode::Zext32)
    };
    assert_eq!(wrapped("(i32.and (i32.wrap_i64 (local.get 0)) (i32.const 1))"), 0);
    assert_eq!(wrapped("(i32.add (local.get 1) (i32.wrap_i64 (local.get 0)))"), 0);
    // An identity would leave the upper bits; a local must hold a
    // zero-extended value; a comparison may become a 64-bit branch.
    assert_eq!(wrapped("(i32.and (i32.wrap_i64 (local.get 0)) (i32.const -1))"), 1);
    assert_eq!(wrapped("(local.set 1 (i32.wrap_i64 (local.get 0))) (local.get 1)"), 1);
    assert_eq!(wrapped("(i32.eq (i32.wrap_i64 (local.get 0)) (i32.const 3))"), 1);
}

#[test]
fn a_signed_division_by_a_constant_other_than_minus_one_takes_the_immediate_form() {
    let div = |c: i64| {
        let code =
            lowered(&format!("(module (func (param i64) (result i64) (i64.div_s (local.get 0) (i64.const {c}))))"));
        (count(&code, Opcode::DivSI), count(&code, Opcode::DivST))
    };
    assert_eq!(div(2), (1, 0));
    assert_eq!(div(-7), (1, 0));
    assert_eq!(div(-1), (0, 1));
    assert_eq!(div(0), (0, 1));
}

#[test]
fn a_constant_used_in_a_loop_is_kept_in_a_register_and_reloaded_after_calls() {
    let code = lowered(
        r#"(module (func $f (param f64) (result f64)
            (loop
                (local.set 0 (f64.mul (local.get 0) (f64.const 2.5)))
                (br_if 0 (f64.lt (local.get 0) (f64.const 2.5))))
            (local.get 0)))"#,
    );
    // Loaded once in the prologue (li + lih), not in the loop (r13 gets
    // the stack limit).
    let lis = code.iter().filter(|i| i.op == Opcode::Li && i.a != S2).count();
    assert_eq!((lis, count(&code, Opcode::Lih)), (1, 1));
    let code = lowered(
        r#"(module (func $f (param f64) (result f64)
            (loop
                (local.set 0 (f64.mul (local.get 0) (f64.const 2.5)))
                (local.set 0 (f64.add (local.get 0) (f64.const 2.5)))
                (local.set 0 (f64.sub (local.get 0) (f64.const 2.5)))
                (local.set 0 (call $f (local.get 0)))
                (br_if 0 (f64.lt (local.get 0) (f64.const 2.5))))
            (local.get 0)))"#,
    );
    // Four uses, one call in the loop: in the prologue and after the call.
    assert_eq!(count(&code, Opcode::Lih), 2);
    let call = code.iter().position(|i| i.op == Opcode::Call).unwrap();
    assert!(code[call..].iter().any(|i| i.op == Opcode::Lih));
}

#[test]
fn the_last_argument_is_computed_into_its_register_after_the_saves() {
    let code = lowered(
        r#"(module (func $f (param i64) (result i64)
            (i64.add (call $f (i64.add (local.get 0) (i64.const -1))) (local.get 0))))"#,
    );
    // r0 is saved, then n - 1 computed into r0 itself: no move.
    let call = code.iter().position(|i| i.op == Opcode::Call).unwrap();
    assert_eq!(ops(&code[call - 2..call]), vec![Opcode::St64, Opcode::AddI]);
    assert_eq!((code[call - 1].a, code[call - 1].b), (0, 0));
    assert_eq!(count(&code[..call], Opcode::Mov), 0);
}

#[test]
fn the_last_argument_stays_in_its_home_if_another_argument_reads_its_register() {
    let code = lowered(
        r#"(module (func $f (param i64 i64) (result i64)
            (call $f (local.get 1) (i64.add (local.get 0) (i64.const 1)))))"#,
    );
    // r1 (local 1) is the first argument: the sum must not go to r1 before
    // it has been moved to r0.
    let call = code.iter().position(|i| i.op == Opcode::Call).unwrap();
    let add = code[..call].iter().find(|i| i.op == Opcode::AddI).unwrap();
    assert_ne!(add.a, 1);
    assert_eq!(count(&code[..call], Opcode::Mov), 2);
}

#[test]
fn a_comparison_as_the_condition_of_a_select_becomes_its_branch() {
    let code = lowered(
        r#"(module (func (param i64 i64) (result i64)
            (select (local.get 0) (i64.const -1) (i64.lt_u (local.get 1) (local.get 0)))))"#,
    );
    assert_eq!(count(&code, Opcode::Sltu), 0);
    // (Besides the stack check's bltu sp.)
    let branches = code.iter().filter(|i| matches!(i.op, Opcode::Bltu | Opcode::Bgeu) && i.a != SP).count();
    assert_eq!(branches, 1);
    // An eqz takes no register either; another condition is tested as
    // it is.
    let code = lowered(
        r#"(module (func (param i64 i64) (result i64)
            (select (local.get 0) (local.get 1) (i64.eqz (local.get 1)))))"#,
    );
    assert_eq!((count(&code, Opcode::SeqI), count(&code, Opcode::Beqz)), (0, 1));
    let code = lowered(
        r#"(module (func (param i64 i32) (result i64)
            (select (local.get 0) (i64.const 5) (local.get 1))))"#,
    );
    assert_eq!(count(&code, Opcode::Bnez), 1);
}

#[test]
fn a_select_of_a_local_read_no_more_is_computed_in_its_register() {
    // Local 2 is dead after the select: no move, the -1 goes into its
    // register (r2) when the comparison fails, and the add reads r2.
    let body = |tail: &str| {
        format!(
            r#"(module (func (param i64 i64) (result i64) (local i64)
                (local.set 2 (i64.rem_u (local.get 0) (i64.const 7)))
                (i64.add (local.get 1)
                    (select (local.get 2) (i64.const -1) (i64.lt_u (local.get 2) (i64.const 4))))
                {tail}))"#
        )
    };
    let code = lowered(&body(""));
    assert_eq!(count(&code, Opcode::Mov), 0, "{code:?}");
    let li = code.iter().find(|i| i.op == Opcode::Li && i.imm == -1).expect("li -1");
    let add = code.iter().find(|i| i.op == Opcode::Add).expect("add");
    assert!(add.b == li.a || add.c == li.a, "{code:?}");
    // Read again afterwards, local 2 keeps its value: the select moves it
    // into the result's register first (the other move returns it).
    let code = lowered(&body("(drop) (local.get 2)"));
    assert_eq!(count(&code, Opcode::Mov), 2, "{code:?}");
    assert!(code.iter().any(|i| i.op == Opcode::Mov && i.b == 2 && i.a != 0), "{code:?}");
    let li = code.iter().find(|i| i.op == Opcode::Li && i.imm == -1).expect("li -1");
    assert_ne!(li.a, 2, "{code:?}");
}
