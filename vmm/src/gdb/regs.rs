//! Pure translations between KVM's view of the vCPU and gdb's: registers
//! in the layout of the guest's mode (i386 for 16- and 32-bit code, x86-64
//! for long mode), the debug registers that make breakpoints and
//! watchpoints, and what a `KVM_EXIT_DEBUG` means.

use gdbstub::arch::Arch;
use gdbstub_arch::x86::reg::{X86CoreRegs, X86SegmentRegs, X86_64CoreRegs};
use gdbstub_arch::x86::{X86_64_SSE, X86_SSE};
use kvm_bindings::{
    kvm_debug_exit_arch, kvm_guest_debug, kvm_regs, kvm_sregs, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP,
    KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP,
};

/// Debug registers DR0-DR3.
pub const SLOTS: usize = 4;
/// DR6 bit 14: the stop is a single step.
const DR6_BS: u64 = 1 << 14;
/// Exception vector of int3.
pub const BP_VECTOR: u32 = 3;

/// What a debug register watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotKind {
    /// Execution at the address.
    Exec,
    /// Writes of `len` bytes (1, 2, 4 or 8) from the address.
    Write(u8),
    /// Reads or writes.
    Access(u8),
}

/// A debug register in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub addr: u64,
    pub kind: SlotKind,
}

/// DR7's R/W and LEN bits for `kind` (Intel SDM vol. 3, 18.2.4).
fn rw_len(kind: SlotKind) -> u64 {
    let len = |n: u8| match n {
        2 => 0b01,
        8 => 0b10,
        4 => 0b11,
        _ => 0b00,
    };
    match kind {
        SlotKind::Exec => 0,
        SlotKind::Write(n) => 0b01 | (len(n) << 2),
        SlotKind::Access(n) => 0b11 | (len(n) << 2),
    }
}

/// The `KVM_SET_GUEST_DEBUG` argument: the slots in DR0-DR3 (but an
/// execute breakpoint at `skip`, the address resumed from: this KVM
/// ignores RFLAGS.RF, so a breakpoint there would fire again at once),
/// single-stepping or not, and whether int3 traps to the VMM.
pub fn guest_debug(slots: &[Option<Slot>; SLOTS], step: bool, skip: Option<u64>, int3: bool) -> kvm_guest_debug {
    let mut debug = kvm_guest_debug { control: KVM_GUESTDBG_ENABLE, ..Default::default() };
    let mut dr7 = 0u64;
    for (i, slot) in slots.iter().enumerate() {
        let Some(slot) = slot else { continue };
        if slot.kind == SlotKind::Exec && Some(slot.addr) == skip {
            continue;
        }
        debug.arch.debugreg[i] = slot.addr;
        dr7 |= 1 << (2 * i); // local enable
        dr7 |= rw_len(slot.kind) << (16 + 4 * i);
    }
    if dr7 != 0 {
        debug.control |= KVM_GUESTDBG_USE_HW_BP;
        debug.arch.debugreg[7] = dr7;
    }
    if step {
        debug.control |= KVM_GUESTDBG_SINGLESTEP;
    }
    if int3 {
        debug.control |= KVM_GUESTDBG_USE_SW_BP;
    }
    debug
}

/// What stopped the guest at a `KVM_EXIT_DEBUG`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugStop {
    /// A single step finished.
    Step,
    /// An int3 the stub placed (at `pc`).
    Int3,
    /// The debug register of this slot fired.
    Slot(usize),
    /// None of those: a #DB the guest raised itself.
    Other,
}

/// Reads DR6 and the exception of a debug exit.
pub fn debug_stop(exit: &kvm_debug_exit_arch) -> DebugStop {
    if exit.exception == BP_VECTOR {
        return DebugStop::Int3;
    }
    if let Some(i) = (0..SLOTS).find(|&i| exit.dr6 & (1 << i) != 0) {
        return DebugStop::Slot(i);
    }
    if exit.dr6 & DR6_BS != 0 {
        DebugStop::Step
    } else {
        DebugStop::Other
    }
}

/// The guest's code size from its CS and EFER: 16, 32 or 64.
pub fn bitness(sregs: &kvm_sregs) -> u32 {
    crate::trace::CpuView::new(&kvm_regs::default(), sregs).bitness
}

/// A gdb architecture whose registers we can fill from KVM's and back.
pub trait GuestArch: Arch<BreakpointKind = usize> {
    /// gdb's registers from KVM's.
    fn from_kvm(regs: &kvm_regs, sregs: &kvm_sregs) -> Self::Registers;
    /// KVM's registers with gdb's written into them (segment selectors
    /// are not: changing one means loading a descriptor, which gdb cannot).
    fn to_kvm(gdb: &Self::Registers, regs: &mut kvm_regs);
    /// The name of the layout, for messages.
    const NAME: &'static str;
}

fn segments(s: &kvm_sregs) -> X86SegmentRegs {
    let sel = |seg: &kvm_bindings::kvm_segment| u32::from(seg.selector);
    X86SegmentRegs { cs: sel(&s.cs), ss: sel(&s.ss), ds: sel(&s.ds), es: sel(&s.es), fs: sel(&s.fs), gs: sel(&s.gs) }
}

impl GuestArch for X86_64_SSE {
    const NAME: &'static str = "x86-64";
    fn from_kvm(r: &kvm_regs, s: &kvm_sregs) -> X86_64CoreRegs {
        X86_64CoreRegs {
            regs: [
                r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14,
                r.r15,
            ],
            eflags: r.rflags as u32,
            rip: r.rip,
            segments: segments(s),
            ..Default::default()
        }
    }
    fn to_kvm(g: &X86_64CoreRegs, r: &mut kvm_regs) {
        let [rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15] = g.regs;
        *r = kvm_regs {
            rax,
            rbx,
            rcx,
            rdx,
            rsi,
            rdi,
            rbp,
            rsp,
            r8,
            r9,
            r10,
            r11,
            r12,
            r13,
            r14,
            r15,
            rip: g.rip,
            rflags: (r.rflags & !0xffff_ffff) | u64::from(g.eflags),
        };
    }
}

impl GuestArch for X86_SSE {
    const NAME: &'static str = "i386";
    fn from_kvm(r: &kvm_regs, s: &kvm_sregs) -> X86CoreRegs {
        let lo = |v: u64| v as u32;
        X86CoreRegs {
            eax: lo(r.rax),
            ecx: lo(r.rcx),
            edx: lo(r.rdx),
            ebx: lo(r.rbx),
            esp: lo(r.rsp),
            ebp: lo(r.rbp),
            esi: lo(r.rsi),
            edi: lo(r.rdi),
            eip: lo(r.rip),
            eflags: lo(r.rflags),
            segments: segments(s),
            ..Default::default()
        }
    }
    fn to_kvm(g: &X86CoreRegs, r: &mut kvm_regs) {
        let keep_high = |old: u64, new: u32| (old & !0xffff_ffff) | u64::from(new);
        r.rax = keep_high(r.rax, g.eax);
        r.rcx = keep_high(r.rcx, g.ecx);
        r.rdx = keep_high(r.rdx, g.edx);
        r.rbx = keep_high(r.rbx, g.ebx);
        r.rsp = keep_high(r.rsp, g.esp);
        r.rbp = keep_high(r.rbp, g.ebp);
        r.rsi = keep_high(r.rsi, g.esi);
        r.rdi = keep_high(r.rdi, g.edi);
        r.rip = keep_high(r.rip, g.eip);
        r.rflags = keep_high(r.rflags, g.eflags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakpoints_and_watchpoints_fill_the_debug_registers() {
        let mut slots = [None; SLOTS];
        slots[0] = Some(Slot { addr: 0x10_0040, kind: SlotKind::Exec });
        slots[2] = Some(Slot { addr: 0x20_0000, kind: SlotKind::Write(4) });
        let d = guest_debug(&slots, false, None, false);
        assert_eq!(d.control, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP);
        assert_eq!((d.arch.debugreg[0], d.arch.debugreg[2]), (0x10_0040, 0x20_0000));
        // L0, L2; DR2: R/W 01 (write), LEN 11 (4 bytes) in bits 24-27
        assert_eq!(d.arch.debugreg[7], 0b1 | 0b1_0000 | (0b1101 << 24));
    }

    #[test]
    fn the_breakpoint_resumed_from_is_left_out_and_stepping_is_a_flag() {
        let mut slots = [None; SLOTS];
        slots[1] = Some(Slot { addr: 0x1000, kind: SlotKind::Exec });
        let d = guest_debug(&slots, true, Some(0x1000), true);
        assert_eq!(d.control, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_USE_SW_BP);
        assert_eq!(d.arch.debugreg[7], 0);
    }

    #[test]
    fn debug_exits_are_told_apart_by_dr6_and_the_vector() {
        let exit = |exception, dr6| kvm_debug_exit_arch { exception, dr6, ..Default::default() };
        assert_eq!(debug_stop(&exit(1, DR6_BS | 0xffff_0ff0)), DebugStop::Step);
        assert_eq!(debug_stop(&exit(1, 0b0100 | 0xffff_0ff0)), DebugStop::Slot(2));
        assert_eq!(debug_stop(&exit(3, 0)), DebugStop::Int3);
        assert_eq!(debug_stop(&exit(1, 0xffff_0ff0)), DebugStop::Other);
    }

    #[test]
    fn registers_round_trip_in_both_layouts() {
        let r = kvm_regs {
            rax: 0x1_0000_0002,
            rip: 0xffff_ffff_8100_0000,
            rsp: 7,
            r15: 15,
            rflags: 0x246,
            ..Default::default()
        };
        let mut s = kvm_sregs::default();
        s.cs.selector = 0x10;
        let g = X86_64_SSE::from_kvm(&r, &s);
        assert_eq!((g.regs[0], g.regs[7], g.regs[15], g.rip, g.segments.cs), (0x1_0000_0002, 7, 15, r.rip, 0x10));
        let mut back = kvm_regs::default();
        X86_64_SSE::to_kvm(&g, &mut back);
        assert_eq!(back, r);
        let g32 = X86_SSE::from_kvm(&r, &s);
        assert_eq!((g32.eax, g32.eip, g32.eflags), (2, 0x8100_0000, 0x246));
        let mut back32 = r;
        X86_SSE::to_kvm(&X86CoreRegs { eax: 9, ..g32 }, &mut back32);
        assert_eq!(back32.rax, 0x1_0000_0009, "the high half is kept");
    }
}
