//! The vCPU thread's side of the gdb stub. The stub itself runs on the
//! VMM's main thread, which holds the socket, outside the vCPU's seccomp
//! filter; the vCPU thread only reports where it stopped and carries out
//! what the stub asks of the vCPU (its registers, its debug set-up, to
//! resume), so its filter gains no more than `KVM_SET_GUEST_DEBUG`,
//! `KVM_SET_REGS` and `KVM_SET_SREGS` on its own descriptor.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use kvm_bindings::{kvm_debug_exit_arch, kvm_guest_debug, kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;

use crate::control::Control;

/// Why the vCPU stopped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    /// Before the guest's first instruction (`--gdb-wait`).
    Start,
    /// The stub asked (gdb's Ctrl-C, or gdb connecting to a running guest).
    Interrupted,
    /// A `KVM_EXIT_DEBUG`.
    Debug(kvm_debug_exit_arch),
    /// A single step that exited to the VMM for port I/O or MMIO: the
    /// instruction is done (this KVM may not report the step's own stop).
    StepDone,
}

/// How the run ended, for gdb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The process exit status (the guest's, or 79/80/90).
    Exited(i32),
    /// A fatal error, with its message.
    Failed(String),
}

/// What the vCPU thread tells the stub.
#[derive(Debug)]
pub enum Event {
    Stopped(Stop),
    /// The answer to [`Command::ReadRegs`].
    Regs(Box<(kvm_regs, kvm_sregs)>),
    /// The answer to a command that changes state: `Err` with KVM's message.
    Done(Result<(), String>),
    Ended(Ending),
}

/// What the stub asks of a stopped vCPU.
#[derive(Debug)]
pub enum Command {
    ReadRegs,
    WriteRegs(Box<kvm_regs>),
    WriteSregs(Box<kvm_sregs>),
    /// Set this debug state and run: single-stepping if `step`.
    Resume {
        debug: Box<kvm_guest_debug>,
        step: bool,
    },
    /// gdb went away: no more debugging, run on.
    Detach,
    /// gdb killed the guest: end the run.
    Kill,
}

/// What the vCPU does after a stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumed {
    Run,
    Kill,
}

/// The vCPU thread's end of the link to the stub.
#[derive(Debug)]
pub struct VcpuDebug {
    /// The stub asks for a stop through this (a pause of reason `Debug`).
    pub control: Arc<Control>,
    events: Sender<Event>,
    commands: Receiver<Command>,
    /// Stop before the guest's first instruction.
    pub wait_first: bool,
    /// The current resume is a single step.
    pub stepping: bool,
    /// False once gdb has gone: stops are no longer reported.
    pub attached: bool,
}

impl VcpuDebug {
    /// The vCPU's end, and the stub's: (events from the vCPU, commands to it).
    pub fn link(control: Arc<Control>, wait_first: bool) -> (Self, Receiver<Event>, Sender<Command>) {
        let (events, from_vcpu) = std::sync::mpsc::channel();
        let (to_vcpu, commands) = std::sync::mpsc::channel();
        let me = VcpuDebug { control, events, commands, wait_first, stepping: false, attached: true };
        (me, from_vcpu, to_vcpu)
    }

    /// Reports `stop` and carries out the stub's commands until it resumes
    /// the vCPU or kills the guest. A stub that has gone away resumes it.
    pub fn stop(&mut self, vcpu: &mut VcpuFd, stop: Stop) -> Resumed {
        self.stepping = false;
        if !self.attached || self.events.send(Event::Stopped(stop)).is_err() {
            self.attached = false;
            return Resumed::Run;
        }
        while let Ok(command) = self.commands.recv() {
            let reply = match command {
                Command::ReadRegs => match (vcpu.get_regs(), vcpu.get_sregs()) {
                    (Ok(r), Ok(s)) => Event::Regs(Box::new((r, s))),
                    (Err(e), _) | (_, Err(e)) => Event::Done(Err(format!("KVM_GET_REGS/SREGS: {e}"))),
                },
                Command::WriteRegs(regs) => Event::Done(vcpu.set_regs(&regs).map_err(|e| format!("KVM_SET_REGS: {e}"))),
                Command::WriteSregs(s) => Event::Done(vcpu.set_sregs(&s).map_err(|e| format!("KVM_SET_SREGS: {e}"))),
                Command::Resume { debug, step } => match vcpu.set_guest_debug(&debug) {
                    Ok(()) => {
                        self.stepping = step;
                        return Resumed::Run;
                    }
                    Err(e) => Event::Done(Err(format!("KVM_SET_GUEST_DEBUG: {e}"))),
                },
                Command::Detach => {
                    // A failure leaves debugging on; with nobody attached its stops resume at once.
                    let _ = vcpu.set_guest_debug(&kvm_guest_debug::default());
                    self.attached = false;
                    return Resumed::Run;
                }
                Command::Kill => return Resumed::Kill,
            };
            if self.events.send(reply).is_err() {
                break;
            }
        }
        self.attached = false;
        Resumed::Run
    }

    /// Tells the stub how the run ended.
    pub fn ended(&self, ending: Ending) {
        // Nobody may be listening any more: that is fine.
        let _ = self.events.send(Event::Ended(ending));
    }
}
