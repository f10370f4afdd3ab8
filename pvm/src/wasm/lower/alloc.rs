//! Before a function is lowered, one pass over its operators decides where
//! its values live: which locals and operand-stack depths get one of the
//! twelve value registers (the most used, a use inside a loop weighing ten
//! times more per level), which live in the frame and what the frame
//! holds; then [`live`](super::live) finds which locals need zeroing and
//! which are read after each point (so a call saves only the registers
//! still needed).

use wasmparser::Operator;

use super::{consts, live, Loc, VALUE_REGS};
use crate::wasm::module::{Body, FuncType};

/// Where one function's values live, and what its calls must keep.
#[derive(Clone, Debug)]
pub struct Allocation {
    /// Every local, parameters first.
    pub locals: Vec<Loc>,
    /// Home of each operand-stack depth.
    pub homes: Vec<Loc>,
    /// Bytes of frame below the return address.
    pub frame: i32,
    /// Frame offset of the save area for the value registers (one slot
    /// per register), if the function calls.
    pub save_area: Option<i32>,
    /// Declared locals that may be read before some path writes them.
    pub needs_zero: Vec<bool>,
    /// Per operator: the register mask of the locals in registers that
    /// may be read after it before they are written.
    pub live_after: Vec<u16>,
    /// Constants kept in a register (loaded by the prologue and after
    /// every call, never written otherwise).
    pub consts: Vec<(u64, u8)>,
}

/// Counts, weights and the first access of each local.
struct Usage {
    local_w: Vec<u64>,
    depth_w: Vec<u64>,
    /// Per local: the first access is a write at the top level.
    set_first: Vec<Option<bool>>,
    calls: bool,
}

/// True if the operator's result goes to its depth's home (not a lazy
/// local, constant or a forwarded local.set).
fn writes_home(op: &Operator<'_>, next: Option<&Operator<'_>>) -> bool {
    use Operator as W;
    if matches!(
        op,
        W::LocalGet { .. } | W::I32Const { .. } | W::I64Const { .. } | W::F32Const { .. } | W::F64Const { .. }
    ) {
        return false;
    }
    let fused_cmp =
        matches!(super::numeric::numeric(op), Some(super::numeric::Num::Cmp(_) | super::numeric::Num::Eqz { .. }))
            && next.is_some_and(super::stack::fuses_into);
    !fused_cmp && !matches!(next, Some(W::LocalSet { .. } | W::LocalTee { .. } | W::BrIf { .. } | W::If { .. }))
}

/// Per operator: how many blocks (of any kind) enclose it, and the weight
/// of a use there (ten times more per enclosing loop, up to four).
pub(super) fn nesting<'a>(ops: &'a [Operator<'_>]) -> impl Iterator<Item = (usize, u64)> + 'a {
    let mut ctrl: Vec<bool> = Vec::new();
    let mut loops = 0u32;
    ops.iter().map(move |op| {
        let here = (ctrl.len(), 10u64.pow(loops.min(4)));
        match op {
            Operator::Block { .. } | Operator::If { .. } => ctrl.push(false),
            Operator::Loop { .. } => {
                ctrl.push(true);
                loops += 1;
            }
            Operator::End if ctrl.pop() == Some(true) => loops -= 1,
            _ => {}
        }
        here
    })
}

fn usage(body: &Body<'_>, nlocals: usize) -> Usage {
    let max_h = body.heights.iter().copied().max().unwrap_or(0) as usize;
    let mut u =
        Usage { local_w: vec![0; nlocals], depth_w: vec![0; max_h], set_first: vec![None; nlocals], calls: false };
    for ((k, op), (blocks, w)) in body.ops.iter().enumerate().zip(nesting(&body.ops)) {
        match *op {
            Operator::LocalGet { local_index } => {
                let i = local_index as usize;
                if let Some(l) = u.local_w.get_mut(i) {
                    *l += w;
                    u.set_first[i].get_or_insert(false);
                }
            }
            Operator::LocalSet { local_index } | Operator::LocalTee { local_index } => {
                let i = local_index as usize;
                if let Some(l) = u.local_w.get_mut(i) {
                    *l += w;
                    u.set_first[i].get_or_insert(blocks == 0);
                }
            }
            Operator::Call { .. } | Operator::CallIndirect { .. } => u.calls = true,
            _ => {}
        }
        let h = body.heights[k] as usize;
        if h > 0 && writes_home(op, body.ops.get(k + 1)) {
            u.depth_w[h - 1] += w;
        }
    }
    u
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cand {
    Local(usize),
    Depth(usize),
    Const(usize),
}

/// Decides the allocation of a function of type `ty` with body `body`.
pub fn allocate(ty: &FuncType, body: &Body<'_>) -> Allocation {
    let nparams = ty.params.len();
    let nlocals = nparams + body.locals.len();
    let u = usage(body, nlocals);
    let c = consts::uses(&body.ops);
    // The heaviest locals and depths get registers; stack-passed
    // parameters stay where the caller put them.
    let mut cands: Vec<(u64, Cand)> = (0..nlocals)
        .filter(|&i| i >= nparams || i < VALUE_REGS)
        .map(|i| (u.local_w[i], Cand::Local(i)))
        .chain(u.depth_w.iter().enumerate().map(|(d, &w)| (w, Cand::Depth(d))))
        .filter(|&(w, _)| w > 0)
        // A constant pays for its loads (prologue and after each call).
        .chain(c.uses.iter().enumerate().map(|(i, &(_, w))| (w.saturating_sub(c.calls + 1), Cand::Const(i))))
        .filter(|&(w, c)| w > 0 && (!matches!(c, Cand::Const(_)) || w > 1))
        .collect();
    cands.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    cands.truncate(VALUE_REGS);
    let mut taken = [false; VALUE_REGS];
    let mut locals = vec![None; nlocals];
    let mut homes = vec![None; u.depth_w.len()];
    // Parameters keep the register they arrive in.
    for &(_, c) in &cands {
        if let Cand::Local(i) = c {
            if i < nparams {
                taken[i] = true;
                locals[i] = Some(Loc::Reg(i as u8));
            }
        }
    }
    let mut const_regs = vec![None; c.uses.len()];
    for &(_, c) in &cands {
        let slot = match c {
            Cand::Local(i) if i < nparams => continue,
            Cand::Local(i) => &mut locals[i],
            Cand::Depth(d) => &mut homes[d],
            Cand::Const(k) => &mut const_regs[k],
        };
        if let Some(r) = (0..VALUE_REGS).find(|&r| !taken[r]) {
            taken[r] = true;
            *slot = Some(Loc::Reg(r as u8));
        }
    }
    let save_area = u.calls.then_some(0);
    let mut next = if u.calls { 8 * VALUE_REGS as i32 } else { 0 };
    let mut slot = |l: &mut Option<Loc>| {
        if l.is_none() {
            *l = Some(Loc::Slot(next));
            next += 8;
        }
    };
    for (i, l) in locals.iter_mut().enumerate() {
        if i < nparams && i >= VALUE_REGS {
            continue;
        }
        slot(l);
    }
    homes.iter_mut().for_each(&mut slot);
    let frame = next;
    let locals = locals
        .into_iter()
        .enumerate()
        // Stack-passed parameters sit above the return address.
        .map(|(i, l)| l.unwrap_or(Loc::Slot(frame + 8 + 8 * (i as i32 - VALUE_REGS as i32))))
        .collect::<Vec<_>>();
    let homes = homes.into_iter().map(|l| l.unwrap_or(Loc::Slot(0))).collect();
    let bit = live::bits(locals.iter().map(|l| match *l {
        Loc::Reg(r) => Some(r),
        Loc::Slot(_) => None,
    }));
    let live = live::analyze(&body.ops, &bit);
    let needs_zero = (0..nlocals)
        .map(|i| {
            let read_first = match bit[i] {
                Some(b) => live.entry & (1 << b) != 0,
                None => u.set_first[i] != Some(true),
            };
            i >= nparams && u.local_w[i] > 0 && read_first
        })
        .collect();
    let regs = (1u64 << VALUE_REGS) - 1;
    let live_after = live.after.iter().map(|&m| (m & regs) as u16).collect();
    let consts = c
        .uses
        .iter()
        .zip(const_regs)
        .filter_map(|(&(v, _), r)| match r {
            Some(Loc::Reg(r)) => Some((v, r)),
            _ => None,
        })
        .collect();
    Allocation { locals, homes, frame, save_area, needs_zero, live_after, consts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::module::{parse, program_features};

    fn alloc_of(wat: &str) -> Allocation {
        let wasm = wat::parse_str(wat).unwrap();
        let m = parse(&wasm, program_features()).unwrap();
        allocate(m.func_type(m.imported_funcs as u32), &m.bodies[0])
    }

    #[test]
    fn hot_locals_get_registers_and_parameters_keep_theirs() {
        let a = alloc_of(
            r#"(module (func (param i32 i32) (result i32) (local i32 i32)
                (local.set 2 (i32.const 0))
                (block (loop
                    (local.set 2 (i32.add (local.get 2) (local.get 1)))
                    (br_if 0 (local.get 1))))
                (local.get 2)))"#,
        );
        assert_eq!(a.locals[1], Loc::Reg(1));
        assert!(matches!(a.locals[2], Loc::Reg(_)));
        assert_eq!(a.save_area, None);
        // local 3 is never used; local 2 is written first at the top level.
        assert_eq!(a.needs_zero, vec![false, false, false, false]);
    }

    #[test]
    fn a_local_read_before_it_is_written_keeps_its_zeroing() {
        let a = alloc_of(
            r#"(module (func (param i32) (result i32) (local i32 i32)
                (if (local.get 0) (then (local.set 1 (i32.const 5))))
                (local.set 2 (i32.const 7))
                (i32.add (local.get 1) (local.get 2))))"#,
        );
        // local 1 is read after a path that skips its write; local 2 is
        // written on every path first.
        assert_eq!(a.needs_zero, vec![false, true, false]);
    }

    #[test]
    fn many_locals_spill_to_the_frame_and_callers_get_a_save_area() {
        let locals =
            (0..20).map(|i| format!("(local.set {i} (i64.add (local.get {i}) (i64.const 1)))")).collect::<String>();
        let a = alloc_of(&format!("(module (func $f (local {}) {locals} (call $f)))", "i64 ".repeat(20)));
        assert_eq!(a.locals.iter().filter(|l| matches!(l, Loc::Reg(_))).count(), VALUE_REGS);
        assert_eq!(a.save_area, Some(0));
        assert!(a.frame >= 8 * VALUE_REGS as i32 + 8 * 8);
        assert!(a.needs_zero.iter().all(|&z| z));
    }

    #[test]
    fn stack_passed_parameters_are_above_the_return_address() {
        let params = "i32 ".repeat(14);
        let a = alloc_of(&format!("(module (func (param {params}) (drop (local.get 13))))"));
        assert_eq!(a.locals[13], Loc::Slot(a.frame + 16));
    }
}
