//! The exit trace: which instruction trapped, in the guest's current mode,
//! read through the guest's page tables; and one formatted line per exit.

use std::fmt;
use std::time::Duration;

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter, Mnemonic};
use kvm_bindings::{kvm_regs, kvm_sregs};

use crate::arch::x86_64::paging::{self, PagingMode};
use crate::arch::x86_64::regs::{CR0_PE, EFER_LMA};
use crate::memory::{self, GuestMemoryMmap};
use crate::vcpu::{Access, ExitKind};

/// Longest x86 instruction.
const MAX_INSTRUCTION: usize = 15;

/// Where the guest is executing: its mode and instruction pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuView {
    /// 16, 32 or 64.
    pub bitness: u32,
    pub rip: u64,
    /// CS base + RIP (RIP alone in 64-bit mode).
    pub linear: u64,
    pub paging: PagingMode,
    pub cr3: u64,
}

impl CpuView {
    /// Derives the execution mode from the segment and control registers.
    pub fn new(regs: &kvm_regs, sregs: &kvm_sregs) -> Self {
        let bitness = if sregs.efer & EFER_LMA != 0 && sregs.cs.l == 1 {
            64
        } else if sregs.cr0 & CR0_PE != 0 && sregs.cs.db == 1 {
            32
        } else {
            16
        };
        let linear = if bitness == 64 { regs.rip } else { sregs.cs.base.wrapping_add(regs.rip) };
        CpuView {
            bitness,
            rip: regs.rip,
            linear,
            paging: PagingMode::from_registers(sregs.cr0, sregs.cr4, sregs.efer),
            cr3: sregs.cr3,
        }
    }

    /// Name of the mode, for messages.
    pub fn mode_name(&self) -> &'static str {
        match (self.bitness, self.paging) {
            (64, _) => "64-bit long mode",
            (32, PagingMode::Off) => "32-bit protected mode, paging off",
            (32, _) => "32-bit protected mode, paging on",
            _ => "16-bit real mode",
        }
    }
}

/// An instruction read from guest memory and disassembled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    pub bytes: Vec<u8>,
    pub text: String,
    /// Bytes one access of the instruction moves: the port register's size
    /// for `in`/`out`, the memory operand's size otherwise (0 if none).
    pub access_size: usize,
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: Vec<String> = self.bytes.iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "{} [{}]", self.text, hex.join(" "))
    }
}

/// Reads the instruction at `linear` (through the page tables) and disassembles it.
pub fn fetch(mem: &GuestMemoryMmap, view: &CpuView, linear: u64) -> Option<Instruction> {
    let phys = paging::translate(mem, view.paging, view.cr3, linear)?;
    // Stay within the page: the next one may map elsewhere.
    let in_page = (0x1000 - (phys & 0xfff)) as usize;
    let mut bytes = vec![0u8; MAX_INSTRUCTION.min(in_page)];
    while !bytes.is_empty() && memory::read(mem, phys, &mut bytes).is_err() {
        bytes.pop();
    }
    if bytes.is_empty() {
        return None;
    }
    let ip = view.rip.wrapping_add(linear.wrapping_sub(view.linear));
    let decoded = decode(&bytes, view.bitness, ip);
    let (len, text) = format(&decoded);
    bytes.truncate(len.max(1));
    let access_size = match decoded.mnemonic() {
        Mnemonic::In => decoded.op0_register().size(),
        Mnemonic::Out => decoded.op1_register().size(),
        _ => decoded.memory_size().size(),
    };
    Some(Instruction { bytes, text, access_size })
}

fn decode(bytes: &[u8], bitness: u32, ip: u64) -> iced_x86::Instruction {
    Decoder::with_ip(bitness, bytes, ip, DecoderOptions::NONE).decode()
}

fn format(instruction: &iced_x86::Instruction) -> (usize, String) {
    if instruction.is_invalid() {
        return (0, "(invalid instruction)".to_string());
    }
    let mut text = String::new();
    IntelFormatter::new().format(instruction, &mut text);
    (instruction.len(), text)
}

/// Disassembles the first instruction of `bytes` (Intel syntax); returns its
/// length and text.
pub fn disassemble(bytes: &[u8], bitness: u32, ip: u64) -> (usize, String) {
    format(&decode(bytes, bitness, ip))
}

/// Whether `i` can cause an exit of `kind` moving `size` bytes per access.
fn can_cause(kind: ExitKind, size: Option<usize>, i: &Instruction) -> bool {
    let t = i.text.as_str();
    let kind_fits = match kind {
        ExitKind::IoIn => t.starts_with("in ") || t.contains("ins"),
        ExitKind::IoOut => t.starts_with("out ") || t.contains("outs"),
        ExitKind::MmioRead | ExitKind::MmioWrite => i.access_size > 0,
        ExitKind::Hlt => t == "hlt",
        _ => return true,
    };
    kind_fits && size.is_none_or(|s| s == i.access_size)
}

/// The instruction behind an exit. Depending on the exit and the KVM
/// flavour, RIP points at the trapping instruction or just past it (HLT
/// always; port I/O on some nested KVMs). If the instruction at RIP cannot
/// have caused the exit, the bytes just before RIP are tried, nearest first.
/// `size` is the bytes per access when known (port I/O element size, MMIO length).
pub fn trapping_instruction(
    mem: &GuestMemoryMmap,
    view: &CpuView,
    kind: ExitKind,
    size: Option<usize>,
) -> Option<Instruction> {
    let at_rip = fetch(mem, view, view.linear);
    if at_rip.as_ref().is_some_and(|i| can_cause(kind, size, i)) {
        return at_rip;
    }
    let look_back = match kind {
        ExitKind::Hlt => 1,
        ExitKind::IoIn | ExitKind::IoOut => 4,
        ExitKind::MmioRead | ExitKind::MmioWrite => MAX_INSTRUCTION,
        _ => 0,
    };
    (1..=look_back as u64)
        .filter_map(|k| fetch(mem, view, view.linear.wrapping_sub(k)).filter(|i| i.bytes.len() as u64 == k))
        .find(|i| can_cause(kind, size, i))
        .or(at_rip)
}

/// One line of the exit trace.
#[derive(Debug)]
pub struct TraceLine<'a> {
    pub seq: u64,
    pub elapsed: Duration,
    pub kind: ExitKind,
    pub rip: u64,
    pub instruction: Option<&'a Instruction>,
    pub access: Option<Access>,
    /// Bytes per element of a port access (KVM's `io.size`): `rep outsb`
    /// moves `len / size` elements in one exit.
    pub io_size: Option<u8>,
}

impl fmt::Display for TraceLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.instruction.map_or("?", |i| i.text.as_str());
        write!(
            f,
            "#{:<6} +{:>10.3}ms {:<11} rip={:#010x}  {:<28}",
            self.seq,
            self.elapsed.as_secs_f64() * 1e3,
            self.kind.name(),
            self.rip,
            text
        )?;
        let Some(a) = self.access else { return Ok(()) };
        let space = match self.kind {
            ExitKind::IoIn | ExitKind::IoOut => "port",
            _ => "addr",
        };
        write!(f, " {space}={:#x}", a.addr)?;
        match self.io_size {
            Some(size) if usize::from(size) < a.len => write!(f, " size={size}x{}", a.len / usize::from(size.max(1)))?,
            _ => write!(f, " size={}", a.len)?,
        }
        if a.len <= 8 {
            write!(f, " data={:#0width$x}", a.value, width = 2 + 2 * a.len)?;
        }
        match a.dispatch.device {
            Some(d) => write!(f, " -> {d}"),
            None if a.dispatch.first_unclaimed => write!(f, " -> unclaimed (first access to this address)"),
            None => write!(f, " -> unclaimed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{DeviceRequest, Dispatch};

    #[test]
    fn disassembles_in_each_mode() {
        assert_eq!(disassemble(&[0xee], 16, 0x7c00), (1, "out dx,al".to_string()));
        assert_eq!(disassemble(&[0xef], 32, 0).1, "out dx,eax");
        assert_eq!(disassemble(&[0x66, 0xef], 64, 0).1, "out dx,ax");
        assert_eq!(disassemble(&[0xf3, 0x6e], 64, 0).1, "rep outsb dx,[rsi]");
        assert_eq!(disassemble(&[0x48, 0x89, 0x43, 0x08], 64, 0).1, "mov [rbx+8],rax");
        assert_eq!(disassemble(&[0x0f, 0xff], 64, 0).0, 0);
    }

    #[test]
    fn mode_follows_cs_and_efer() {
        let regs = kvm_regs { rip: 0x7c00, ..Default::default() };
        let mut sregs = kvm_sregs::default();
        assert_eq!(CpuView::new(&regs, &sregs).bitness, 16);
        sregs.cr0 = CR0_PE;
        sregs.cs.db = 1;
        sregs.cs.base = 0x1000;
        let v = CpuView::new(&regs, &sregs);
        assert_eq!((v.bitness, v.linear), (32, 0x8c00));
        sregs.efer = EFER_LMA;
        sregs.cs.l = 1;
        sregs.cs.db = 0;
        assert_eq!(CpuView::new(&regs, &sregs).linear, 0x7c00);
    }

    #[test]
    fn fetch_reads_through_guest_memory() {
        let mem = memory::create(1).unwrap();
        memory::write(&mem, 0x7c00, &[0xe6, 0xf4]).unwrap();
        let regs = kvm_regs { rip: 0x7c00, ..Default::default() };
        let view = CpuView::new(&regs, &kvm_sregs::default());
        let i = fetch(&mem, &view, view.linear).unwrap();
        assert_eq!(i.text, "out 0F4h,al");
        assert_eq!(i.bytes, [0xe6, 0xf4]);
        assert_eq!(i.to_string(), "out 0F4h,al [e6 f4]");
    }

    #[test]
    fn looks_back_for_the_instruction_that_trapped() {
        let mem = memory::create(1).unwrap();
        // 66 ef: out dx,ax, then RIP just past it (as some KVMs report)
        memory::write(&mem, 0x7000, &[0x90, 0x66, 0xef, 0x90]).unwrap();
        let mut sregs = kvm_sregs { cr0: CR0_PE, ..Default::default() };
        sregs.cs.db = 1;
        let view = CpuView::new(&kvm_regs { rip: 0x7003, ..Default::default() }, &sregs);
        let i = trapping_instruction(&mem, &view, ExitKind::IoOut, Some(2)).unwrap();
        assert_eq!(i.text, "out dx,ax");
        // hlt with RIP past it
        memory::write(&mem, 0x7100, &[0xf4, 0x90]).unwrap();
        let view = CpuView::new(&kvm_regs { rip: 0x7101, ..Default::default() }, &sregs);
        assert_eq!(trapping_instruction(&mem, &view, ExitKind::Hlt, None).unwrap().text, "hlt");
        // 48 89 43 08: mov [rbx+8],rax (8-byte MMIO write) in 64-bit mode
        memory::write(&mem, 0x7200, &[0x48, 0x89, 0x43, 0x08, 0x90]).unwrap();
        sregs.efer = EFER_LMA;
        sregs.cs.l = 1;
        sregs.cs.db = 0;
        let view = CpuView::new(&kvm_regs { rip: 0x7204, ..Default::default() }, &sregs);
        let i = trapping_instruction(&mem, &view, ExitKind::MmioWrite, Some(8)).unwrap();
        assert_eq!(i.text, "mov [rbx+8],rax");
    }

    #[test]
    fn trace_line_shows_port_size_data_and_device() {
        let instr = Instruction { bytes: vec![0xee], text: "out dx,al".into(), access_size: 1 };
        let access = Access {
            addr: 0x3f8,
            len: 1,
            value: 0x48,
            dispatch: Dispatch { device: Some("uart"), first_unclaimed: false, request: DeviceRequest::None },
        };
        let line = TraceLine {
            seq: 3,
            elapsed: Duration::from_micros(1500),
            kind: ExitKind::IoOut,
            rip: 0x7c0a,
            instruction: Some(&instr),
            access: Some(access),
            io_size: Some(1),
        }
        .to_string();
        assert!(line.starts_with("#3 "), "{line}");
        assert!(line.contains("1.500ms io-out"), "{line}");
        assert!(line.contains("rip=0x00007c0a  out dx,al"), "{line}");
        assert!(line.ends_with("port=0x3f8 size=1 data=0x48 -> uart"), "{line}");

        let rep = TraceLine { access: Some(Access { len: 38, ..access }), ..line_parts(&instr) };
        assert!(rep.to_string().ends_with("port=0x3f8 size=1x38 -> uart"), "{rep}");
    }

    fn line_parts(instr: &Instruction) -> TraceLine<'_> {
        TraceLine {
            seq: 0,
            elapsed: Duration::ZERO,
            kind: ExitKind::IoOut,
            rip: 0,
            instruction: Some(instr),
            access: None,
            io_size: Some(1),
        }
    }
}
