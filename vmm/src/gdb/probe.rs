//! What this machine's KVM can do for a debugger, found by trying it on a
//! VM of its own with five real-mode instructions: a single step, an
//! execute breakpoint in DR0 (and whether RFLAGS.RF lets the guest go on
//! past it), a write watchpoint in DR1, and an int3 that should trap to the
//! VMM. Hardware KVM does all of it; a nested, software-assisted KVM such
//! as `kvm_pvm` steps and breaks but ignores RF, never fires watchpoints and
//! cannot run int3 (an emulation failure).

use kvm_bindings::{kvm_guest_debug, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_SW_BP};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};

use super::regs::{self, DebugStop, Slot, SlotKind, SLOTS};
use crate::arch::x86_64::layout::KVM_TSS_ADDRESS;
use crate::memory;

/// nop; nop; mov [0x2000],al; hlt; int3; hlt (16-bit code at [`CODE`]).
/// Every real-mode interrupt vector points at the last hlt, so an int3 the
/// VMM does not get, or any exception, ends in a HLT exit, never a loop.
const PROGRAM: [u8; 8] = [0x90, 0x90, 0xa2, 0x00, 0x20, 0xf4, 0xcc, 0xf4];
const CODE: u64 = 0x1000;
const INT3_AT: u64 = CODE + 6;
const LAST_HLT: u64 = CODE + 7;
const DATA: u64 = 0x2000;
const RFLAGS_RF: u64 = 1 << 16;

/// What the probe found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// False if the probe VM could not be made (nothing is known).
    pub probed: bool,
    pub single_step: bool,
    /// DR0-DR3 execute breakpoints fire.
    pub hw_breakpoints: bool,
    /// A breakpoint resumed from with RFLAGS.RF set does not fire again.
    pub resume_flag: bool,
    /// DR0-DR3 data watchpoints fire.
    pub watchpoints: bool,
    /// int3 traps to the VMM (software breakpoints past four).
    pub int3: bool,
}

impl Caps {
    /// One line for stderr and `monitor caps`.
    pub fn describe(&self) -> String {
        if !self.probed {
            return "could not probe this KVM's debugging; assuming hardware breakpoints and single-step".into();
        }
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut s = format!(
            "this KVM (probed): single-step {}; hardware breakpoints {}",
            yes(self.single_step),
            if self.hw_breakpoints { "4 (DR0-DR3)" } else { "no" }
        );
        if self.hw_breakpoints && !self.resume_flag {
            s.push_str(" (it ignores the resume flag: the stub steps past a breakpoint with it disabled)");
        }
        s.push_str(match self.int3 {
            true => "; int3 breakpoints yes (past the fourth breakpoint)",
            false => "; int3 breakpoints no (KVM cannot run int3 here): at most 4 breakpoints",
        });
        s.push_str(match self.watchpoints {
            true => "; data watchpoints yes (they share the 4 debug registers)",
            false => "; data watchpoints no (they never fire here): gdb falls back to software watchpoints, which single-step",
        });
        s
    }

    /// What to assume when probing is impossible (hardware KVM's answers).
    fn assumed() -> Caps {
        Caps {
            probed: false,
            single_step: true,
            hw_breakpoints: true,
            resume_flag: true,
            watchpoints: true,
            int3: true,
        }
    }
}

/// What one probe run ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Debug(DebugStop, u64),
    Other,
}

fn run_from(vcpu: &mut VcpuFd, rip: u64, rflags: u64, debug: &kvm_guest_debug) -> Option<Ended> {
    let mut regs = vcpu.get_regs().ok()?;
    (regs.rip, regs.rflags) = (rip, rflags);
    vcpu.set_regs(&regs).ok()?;
    vcpu.set_guest_debug(debug).ok()?;
    for _ in 0..4 {
        match vcpu.run() {
            Ok(VcpuExit::Debug(exit)) => {
                let pc = vcpu.get_regs().ok()?.rip;
                return Some(Ended::Debug(regs::debug_stop(&exit), pc));
            }
            Ok(VcpuExit::IoOut(..) | VcpuExit::IoIn(..)) => {}
            Ok(_) => return Some(Ended::Other),
            Err(e) if e.errno() == libc::EINTR => {}
            Err(_) => return None,
        }
    }
    Some(Ended::Other)
}

fn with_slot(index: usize, slot: Slot) -> kvm_guest_debug {
    let mut slots = [None; SLOTS];
    slots[index] = Some(slot);
    regs::guest_debug(&slots, false, None, false)
}

/// Probes `kvm`; where it cannot make the probe VM, says so and assumes hardware KVM.
pub fn probe(kvm: &Kvm) -> Caps {
    try_probe(kvm).unwrap_or_else(Caps::assumed)
}

fn try_probe(kvm: &Kvm) -> Option<Caps> {
    let vm = kvm.create_vm().ok()?;
    vm.set_tss_address(KVM_TSS_ADDRESS).ok()?;
    let mem = memory::create(1).ok()?;
    memory::register(&vm, &mem, false).ok()?;
    memory::write(&mem, CODE, &PROGRAM).ok()?;
    let ivt: Vec<u8> = (0..256).flat_map(|_| (LAST_HLT as u32).to_le_bytes()).collect();
    memory::write(&mem, 0, &ivt).ok()?;
    let mut vcpu = vm.create_vcpu(0).ok()?;
    let mut sregs = vcpu.get_sregs().ok()?;
    for seg in [&mut sregs.cs, &mut sregs.ds, &mut sregs.es, &mut sregs.ss] {
        (seg.base, seg.selector) = (0, 0);
    }
    vcpu.set_sregs(&sregs).ok()?;
    let step = kvm_guest_debug { control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP, ..Default::default() };
    let single_step = run_from(&mut vcpu, CODE, 2, &step)? == Ended::Debug(DebugStop::Step, CODE + 1);
    let exec = with_slot(0, Slot { addr: CODE + 1, kind: SlotKind::Exec });
    let hw_breakpoints = run_from(&mut vcpu, CODE, 2, &exec)? == Ended::Debug(DebugStop::Slot(0), CODE + 1);
    let again = run_from(&mut vcpu, CODE + 1, 2 | RFLAGS_RF, &exec)?;
    let resume_flag = hw_breakpoints && again != Ended::Debug(DebugStop::Slot(0), CODE + 1);
    let watch = with_slot(1, Slot { addr: DATA, kind: SlotKind::Write(1) });
    let watchpoints = matches!(run_from(&mut vcpu, CODE + 2, 2, &watch)?, Ended::Debug(DebugStop::Slot(1), _));
    let sw = kvm_guest_debug { control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP, ..Default::default() };
    let int3 = matches!(run_from(&mut vcpu, INT3_AT, 2, &sw)?, Ended::Debug(DebugStop::Int3, _));
    Some(Caps { probed: true, single_step, hw_breakpoints, resume_flag, watchpoints, int3 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_says_what_is_missing_and_what_gdb_does_instead() {
        let nested = Caps { probed: true, single_step: true, hw_breakpoints: true, ..Caps::default() };
        let d = nested.describe();
        assert!(d.contains("ignores the resume flag"), "{d}");
        assert!(d.contains("int3 breakpoints no") && d.contains("at most 4 breakpoints"), "{d}");
        assert!(d.contains("data watchpoints no") && d.contains("software watchpoints"), "{d}");
        let hardware = Caps { probed: true, ..Caps::assumed() };
        assert!(!hardware.describe().contains(" no"), "{}", hardware.describe());
        assert!(Caps::assumed().describe().starts_with("could not probe"));
    }

    #[test]
    fn the_probe_program_is_what_the_offsets_say() {
        let (len, text) = crate::trace::disassemble(&PROGRAM[2..], 16, CODE + 2);
        assert_eq!((len, text.as_str()), (3, "mov [2000h],al"));
        assert_eq!(crate::trace::disassemble(&PROGRAM[5..], 16, CODE + 5).1, "hlt");
        assert_eq!(crate::trace::disassemble(&PROGRAM[6..], 16, INT3_AT).1, "int3");
        assert_eq!(crate::trace::disassemble(&PROGRAM[7..], 16, LAST_HLT).1, "hlt");
    }
}
