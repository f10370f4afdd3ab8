//! The `gdbstub` target: a stopped vCPU seen through the link to its
//! thread, and the event loop that runs it until it stops again.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::net::TcpStream;
use std::sync::mpsc::RecvTimeoutError;

use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::{run_blocking, DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep, SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint,
    SwBreakpointOps, WatchKind,
};
use gdbstub::target::ext::monitor_cmd::{outputln, ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::{X86_64_SSE, X86_SSE};
use kvm_bindings::{kvm_regs, kvm_sregs};

use super::probe::Caps;
use super::regs::{self, DebugStop, GuestArch, Slot, SlotKind, SLOTS};
use super::vcpu::{Command, Ending, Event, Stop};
use super::{GdbError, StubLink, POLL};
use crate::arch::x86_64::paging::{self, PagingMode};
use crate::memory::{self, GuestMemoryMmap};

/// How a debug register came to be used, to say so at its stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// gdb's `break` (Z0), put in a debug register.
    Sw,
    /// gdb's `hbreak` (Z1).
    Hw,
    /// gdb's `watch`, `rwatch`, `awatch`.
    Watch(WatchKind),
}

/// The target: a vCPU stopped on its thread.
struct GdbTarget<'m, A> {
    link: StubLink,
    mem: &'m GuestMemoryMmap,
    caps: Caps,
    regs: kvm_regs,
    sregs: kvm_sregs,
    slots: [Option<(Slot, Origin)>; SLOTS],
    /// int3 breakpoints past the four debug registers: address, byte replaced.
    int3: BTreeMap<u64, u8>,
    /// Set by `resume`/`step`: the next wait starts the vCPU (true: one step).
    resume: Option<bool>,
    _arch: PhantomData<A>,
}

/// Serves gdb on `stream` with the register layout of the guest's mode;
/// returns what ended the session, for the user.
pub(super) fn debug(stream: TcpStream, link: StubLink, mem: &GuestMemoryMmap, caps: Caps) -> String {
    let Some((regs, sregs)) = read_regs(&link) else { return "the vCPU thread went away".into() };
    if regs::bitness(&sregs) == 64 {
        session::<X86_64_SSE>(stream, GdbTarget::new(link, mem, caps, regs, sregs))
    } else {
        session::<X86_SSE>(stream, GdbTarget::new(link, mem, caps, regs, sregs))
    }
}

fn read_regs(link: &StubLink) -> Option<(kvm_regs, kvm_sregs)> {
    link.commands.send(Command::ReadRegs).ok()?;
    loop {
        match link.events.recv().ok()? {
            Event::Regs(both) => return Some(*both),
            Event::Done(Err(_)) | Event::Ended(_) => return None,
            _ => {}
        }
    }
}

fn session<A: GuestArch>(stream: TcpStream, mut target: GdbTarget<'_, A>) -> String
where
    A::Usize: Into<u64> + TryFrom<u64>,
{
    let conn: Box<dyn ConnectionExt<Error = std::io::Error>> = Box::new(stream);
    let layout = A::NAME;
    let end = GdbStub::new(conn).run_blocking::<EventLoop<'_, A>>(&mut target);
    let link = &target.link;
    match end {
        Ok(DisconnectReason::TargetExited(code)) => format!("the guest exited with status {code}; gdb was told"),
        Ok(DisconnectReason::TargetTerminated(sig)) => format!("the run failed; gdb was told ({sig})"),
        Ok(DisconnectReason::Kill) => {
            let _ = link.commands.send(Command::Kill);
            "gdb killed the guest".into()
        }
        Ok(DisconnectReason::Disconnect) => {
            let _ = link.commands.send(Command::Detach);
            format!("gdb detached ({layout} registers); the guest runs on without it")
        }
        Err(e) => {
            let _ = link.commands.send(Command::Detach);
            format!("the gdb session ended ({e}); the guest runs on without it")
        }
    }
}

impl<'m, A: GuestArch> GdbTarget<'m, A> {
    fn new(link: StubLink, mem: &'m GuestMemoryMmap, caps: Caps, regs: kvm_regs, sregs: kvm_sregs) -> Self {
        GdbTarget {
            link,
            mem,
            caps,
            regs,
            sregs,
            slots: [None; SLOTS],
            int3: BTreeMap::new(),
            resume: None,
            _arch: PhantomData,
        }
    }

    /// The linear address of the next instruction.
    fn pc(&self) -> u64 {
        if regs::bitness(&self.sregs) == 64 {
            self.regs.rip
        } else {
            self.sregs.cs.base.wrapping_add(self.regs.rip) & 0xffff_ffff
        }
    }

    fn translate(&self, linear: u64) -> Option<u64> {
        let s = &self.sregs;
        paging::translate(self.mem, PagingMode::from_registers(s.cr0, s.cr4, s.efer), s.cr3, linear)
    }

    /// Copies guest memory at `linear` into or out of `data`, page by page;
    /// returns the bytes done before the first unmapped page.
    fn access(&mut self, linear: u64, len: usize, mut each: impl FnMut(u64, usize, usize) -> bool) -> usize {
        let mut done = 0;
        while done < len {
            let at = linear.wrapping_add(done as u64);
            let chunk = (0x1000 - (at & 0xfff) as usize).min(len - done);
            match self.translate(at) {
                Some(phys) if each(phys, done, chunk) => done += chunk,
                _ => break,
            }
        }
        done
    }

    fn command(&self, command: Command) -> Result<(), String> {
        self.link.commands.send(command).map_err(|_| "the vCPU thread went away".to_string())?;
        loop {
            match self.link.events.recv() {
                Ok(Event::Done(result)) => return result,
                Ok(Event::Ended(_)) | Err(_) => return Err("the vCPU thread went away".into()),
                Ok(_) => {}
            }
        }
    }

    /// Starts the vCPU: one step or a run, with every breakpoint but an
    /// execute one at `skip`.
    fn start(&self, step: bool, skip: Option<u64>) -> Result<(), GdbError> {
        let slots = self.slots.map(|s| s.map(|(slot, _)| slot));
        let debug = regs::guest_debug(&slots, step, skip, !self.int3.is_empty());
        self.link.commands.send(Command::Resume { debug: Box::new(debug), step }).map_err(|_| GdbError::VcpuGone)
    }

    fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(Option::is_none)
    }

    fn add_slot(&mut self, slot: Slot, origin: Origin) -> bool {
        match self.free_slot() {
            Some(i) if self.caps.hw_breakpoints => {
                self.slots[i] = Some((slot, origin));
                true
            }
            _ => false,
        }
    }

    fn remove_slot(&mut self, slot: Slot) -> bool {
        match self.slots.iter().position(|s| s.is_some_and(|(t, _)| t == slot)) {
            Some(i) => {
                self.slots[i] = None;
                true
            }
            None => false,
        }
    }

    /// What to tell gdb about `stop`.
    fn stop_reason(&self, stop: Stop) -> SingleThreadStopReason<A::Usize>
    where
        A::Usize: TryFrom<u64>,
    {
        match stop {
            Stop::Start => SingleThreadStopReason::Signal(Signal::SIGTRAP),
            Stop::Interrupted => SingleThreadStopReason::Signal(Signal::SIGINT),
            Stop::StepDone => SingleThreadStopReason::DoneStep,
            Stop::Debug(exit) => match regs::debug_stop(&exit) {
                DebugStop::Step => SingleThreadStopReason::DoneStep,
                DebugStop::Int3 => SingleThreadStopReason::SwBreak(()),
                DebugStop::Slot(i) => match self.slots[i] {
                    Some((_, Origin::Sw)) => SingleThreadStopReason::SwBreak(()),
                    Some((_, Origin::Hw)) => SingleThreadStopReason::HwBreak(()),
                    Some((slot, Origin::Watch(kind))) => match A::Usize::try_from(slot.addr) {
                        Ok(addr) => SingleThreadStopReason::Watch { tid: (), kind, addr },
                        Err(_) => SingleThreadStopReason::Signal(Signal::SIGTRAP),
                    },
                    None => SingleThreadStopReason::Signal(Signal::SIGTRAP),
                },
                DebugStop::Other => SingleThreadStopReason::Signal(Signal::SIGTRAP),
            },
        }
    }
}

impl<A: GuestArch> Target for GdbTarget<'_, A>
where
    A::Usize: Into<u64> + TryFrom<u64>,
{
    type Arch = A;
    type Error = GdbError;

    fn base_ops(&mut self) -> BaseOps<'_, A, GdbError> {
        BaseOps::SingleThread(self)
    }
    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }
}

impl<A: GuestArch> SingleThreadBase for GdbTarget<'_, A>
where
    A::Usize: Into<u64> + TryFrom<u64>,
{
    fn read_registers(&mut self, regs: &mut A::Registers) -> TargetResult<(), Self> {
        *regs = A::from_kvm(&self.regs, &self.sregs);
        Ok(())
    }

    fn write_registers(&mut self, regs: &A::Registers) -> TargetResult<(), Self> {
        let mut new = self.regs;
        A::to_kvm(regs, &mut new);
        self.command(Command::WriteRegs(Box::new(new))).map_err(|_| TargetError::NonFatal)?;
        self.regs = new;
        Ok(())
    }

    fn read_addrs(&mut self, start: A::Usize, data: &mut [u8]) -> TargetResult<usize, Self> {
        let (start, mem) = (start.into(), self.mem);
        let len = data.len();
        let n = self.access(start, len, |phys, at, chunk| memory::read(mem, phys, &mut data[at..at + chunk]).is_ok());
        // gdb sees the bytes the int3 breakpoints replaced.
        for (&addr, &byte) in self.int3.range(start..start.saturating_add(n as u64)) {
            data[(addr - start) as usize] = byte;
        }
        Ok(n)
    }

    fn write_addrs(&mut self, start: A::Usize, data: &[u8]) -> TargetResult<(), Self> {
        let (start, mem) = (start.into(), self.mem);
        let n =
            self.access(start, data.len(), |phys, at, chunk| memory::write(mem, phys, &data[at..at + chunk]).is_ok());
        if n < data.len() {
            return Err(TargetError::Errno(14)); // EFAULT
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl<A: GuestArch> SingleThreadResume for GdbTarget<'_, A>
where
    A::Usize: Into<u64> + TryFrom<u64>,
{
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), GdbError> {
        self.resume = Some(false);
        Ok(())
    }
    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl<A: GuestArch> SingleThreadSingleStep for GdbTarget<'_, A>
where
    A::Usize: Into<u64> + TryFrom<u64>,
{
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), GdbError> {
        self.resume = Some(true);
        Ok(())
    }
}

impl<A: GuestArch> Breakpoints for GdbTarget<'_, A>
where
    A::Usize: Into<u64> + TryFrom<u64>,
{
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        self.caps.hw_breakpoints.then_some(self)
    }
    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        // Without it gdb falls back to software watchpoints (it single-steps).
        self.caps.watchpoints.then_some(self)
    }
}

impl<A: GuestArch> SwBreakpoint for GdbTarget<'_, A>
where
    A::Usize: Into<u64> + TryFrom<u64>,
{
    fn add_sw_breakpoint(&mut self, addr: A::Usize, _kind: usize) -> TargetResult<bool, Self> {
        let addr = addr.into();
        if self.add_slot(Slot { addr, kind: SlotKind::Exec }, Origin::Sw) {
            return Ok(true);
        }
        if !self.caps.int3 {
            return Ok(false); // gdb says it cannot insert it; `monitor caps` says why
        }
        let mut byte = [0u8];
        let phys = self.translate(addr).ok_or(TargetError::Errno(14))?;
        memory::read(self.mem, phys, &mut byte).map_err(|_| TargetError::Errno(14))?;
        memory::write(self.mem, phys, &[0xcc]).map_err(|_| TargetError::Errno(14))?;
        self.int3.insert(addr, byte[0]);
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: A::Usize, _kind: usize) -> TargetResult<bool, Self> {
        let addr = addr.into();
        if self.remove_slot(Slot { addr, kind: SlotKind::Exec }) {
            return Ok(true);
        }
        let Some(byte) = self.int3.remove(&addr) else { return Ok(false) };
        let phys = self.translate(addr).ok_or(TargetError::Errno(14))?;
        memory::write(self.mem, phys, &[byte]).map_err(|_| TargetError::Errno(14))?;
        Ok(true)
    }
}

impl<A: GuestArch> HwBreakpoint for GdbTarget<'_, A>
where
    A::Usize: Into<u64> + TryFrom<u64>,
{
    fn add_hw_breakpoint(&mut self, addr: A::Usize, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.add_slot(Slot { addr: addr.into(), kind: SlotKind::Exec }, Origin::Hw))
    }
    fn remove_hw_breakpoint(&mut self, addr: A::Usize, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.remove_slot(Slot { addr: addr.into(), kind: SlotKind::Exec }))
    }
}

fn watch_slot(addr: u64, len: u64, kind: WatchKind) -> Option<Slot> {
    let n = u8::try_from(len).ok().filter(|n| matches!(n, 1 | 2 | 4 | 8) && addr.is_multiple_of(len))?;
    let kind = match kind {
        WatchKind::Write => SlotKind::Write(n),
        // x86 has no read-only watchpoint: a read watch also fires on writes.
        WatchKind::Read | WatchKind::ReadWrite => SlotKind::Access(n),
    };
    Some(Slot { addr, kind })
}

impl<A: GuestArch> HwWatchpoint for GdbTarget<'_, A>
where
    A::Usize: Into<u64> + TryFrom<u64>,
{
    fn add_hw_watchpoint(&mut self, addr: A::Usize, len: A::Usize, kind: WatchKind) -> TargetResult<bool, Self> {
        let Some(slot) = watch_slot(addr.into(), len.into(), kind) else { return Ok(false) };
        Ok(self.add_slot(slot, Origin::Watch(kind)))
    }
    fn remove_hw_watchpoint(&mut self, addr: A::Usize, len: A::Usize, kind: WatchKind) -> TargetResult<bool, Self> {
        let Some(slot) = watch_slot(addr.into(), len.into(), kind) else { return Ok(false) };
        Ok(self.remove_slot(slot))
    }
}

impl<A: GuestArch> MonitorCmd for GdbTarget<'_, A>
where
    A::Usize: Into<u64> + TryFrom<u64>,
{
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), GdbError> {
        match cmd {
            b"caps" => outputln!(out, "{}", self.caps.describe()),
            _ => outputln!(out, "vmm monitor commands: caps (what this KVM's debugging can do, probed)"),
        }
        Ok(())
    }
}

/// Runs the vCPU for gdb until it stops, ends, or gdb sends a byte.
enum EventLoop<'m, A> {
    _Never(PhantomData<(&'m (), A)>, std::convert::Infallible),
}

type StopOf<A> = SingleThreadStopReason<<A as gdbstub::arch::Arch>::Usize>;
type WaitError = run_blocking::WaitForStopReasonError<GdbError, std::io::Error>;

impl<'m, A: GuestArch> run_blocking::BlockingEventLoop for EventLoop<'m, A>
where
    A::Usize: Into<u64> + TryFrom<u64>,
{
    type Target = GdbTarget<'m, A>;
    type Connection = Box<dyn ConnectionExt<Error = std::io::Error>>;
    type StopReason = StopOf<A>;

    fn wait_for_stop_reason(
        target: &mut Self::Target,
        conn: &mut Self::Connection,
    ) -> Result<run_blocking::Event<StopOf<A>>, WaitError> {
        // A continue from a breakpoint's address first steps with it left
        // out, as this KVM ignores RFLAGS.RF; then it carries on.
        let mut then_continue = false;
        if let Some(step) = target.resume.take() {
            let pc = target.pc();
            let at_breakpoint = target.slots.iter().flatten().any(|(s, _)| s.kind == SlotKind::Exec && s.addr == pc);
            then_continue = !step && at_breakpoint;
            let skip = at_breakpoint.then_some(pc);
            target.start(step || at_breakpoint, skip).map_err(run_blocking::WaitForStopReasonError::Target)?;
        }
        loop {
            match target.link.events.recv_timeout(POLL) {
                Ok(Event::Stopped(stop)) => {
                    if let Some((r, s)) = read_regs(&target.link) {
                        (target.regs, target.sregs) = (r, s);
                    }
                    let stepped = matches!(target.stop_reason(stop), SingleThreadStopReason::DoneStep);
                    if then_continue && stepped {
                        then_continue = false;
                        target.start(false, None).map_err(run_blocking::WaitForStopReasonError::Target)?;
                        continue;
                    }
                    return Ok(run_blocking::Event::TargetStopped(target.stop_reason(stop)));
                }
                Ok(Event::Ended(Ending::Exited(status))) => {
                    let code = u8::try_from(status).unwrap_or(u8::MAX);
                    return Ok(run_blocking::Event::TargetStopped(SingleThreadStopReason::Exited(code)));
                }
                Ok(Event::Ended(Ending::Failed(_))) => {
                    return Ok(run_blocking::Event::TargetStopped(SingleThreadStopReason::Terminated(Signal::SIGILL)))
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(run_blocking::WaitForStopReasonError::Target(GdbError::VcpuGone))
                }
            }
            if conn.peek().map(|b| b.is_some()).unwrap_or(true) {
                let byte = conn.read().map_err(run_blocking::WaitForStopReasonError::Connection)?;
                return Ok(run_blocking::Event::IncomingData(byte));
            }
        }
    }

    fn on_interrupt(target: &mut Self::Target) -> Result<Option<StopOf<A>>, GdbError> {
        target.link.control.request_pause(crate::control::PauseReason::Debug);
        Ok(None)
    }
}
