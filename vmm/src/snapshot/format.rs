//! The snapshot state file: a versioned header, a table of sections with a
//! CRC-32C each, then the sections. [`parse`] is a pure function over
//! untrusted bytes (no KVM, no files): every malformed input is a named
//! [`SnapshotError`], never a panic.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "VLABSNAP"
//!      8     4  format version (1)
//!     12     4  number of sections N (at most 262)
//!     16     4  CRC-32C of bytes 0..16 and of the section table
//!     20     4  reserved, 0
//!     24  32*N  section table: kind u32, index u32, offset u64, length u64, CRC-32C u32, reserved u32
//!      …        the sections, one after the other, the last one ending the file
//! ```
//!
//! Sections: `machine` (the options the snapshot was made with), one
//! `vcpu` per vCPU, `vm` (in-kernel irqchip, PIT, KVM clock), `devices`
//! (placement and state of each) and `memory` (which pages the memory file
//! holds, with a CRC-32C per run of pages). All integers are little-endian;
//! KVM's structures are stored as their raw `#[repr(C)]` images.

use kvm_bindings::{
    kvm_clock_data, kvm_cpuid_entry2, kvm_debugregs, kvm_fpu, kvm_irqchip, kvm_lapic_state, kvm_mp_state,
    kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs,
};

use super::state::{
    Chip, DeviceRecord, Machine, MemoryLayout, PageRange, Snapshot, VcpuState, VmState, MAX_VCPUS, XSAVE_WORDS,
};
use crate::bus::{BusKind, Placement};
use crate::codec::{crc32c, CodecError, Decoder, Encoder};
use crate::devices::{DeviceState, SerialState};

/// The first bytes of every state file.
pub const MAGIC: [u8; 8] = *b"VLABSNAP";
/// The format version this VMM writes and reads.
pub const VERSION: u32 = 1;
const HEADER_LEN: usize = 24;
const ENTRY_LEN: usize = 32;
const MAX_SECTIONS: u32 = MAX_VCPUS as u32 + 8;
const MAX_CPUID: u64 = 256;
const MAX_MSRS: u64 = 4096;
const MAX_DEVICES: u64 = 64;
const MAX_NAME: u64 = 64;
const MAX_PENDING_INPUT: u64 = 1 << 20;
const MAX_RANGES: u64 = 1 << 20;

/// Errors of reading a state file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("not a virtlab snapshot: the file is {len} bytes, shorter than the {HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error("not a virtlab snapshot: it starts with {found:02x?}, not \"VLABSNAP\"")]
    BadMagic { found: Vec<u8> },
    #[error("snapshot format version {found}, but this vmm reads version {VERSION} only: restore it with the vmm that wrote it")]
    Version { found: u32 },
    #[error("the snapshot declares {count} sections, more than the {MAX_SECTIONS} a snapshot can have: the header is corrupt")]
    TooManySections { count: u32 },
    #[error("the snapshot's section table needs {need} bytes, the file has {len}: the file is truncated")]
    TableTruncated { need: usize, len: usize },
    #[error(
        "the snapshot's header checksum is {stored:#010x}, its bytes give {computed:#010x}: the header is corrupt"
    )]
    HeaderChecksum { stored: u32, computed: u32 },
    #[error("the snapshot's reserved header word is {value:#x}, not 0: the header is corrupt")]
    HeaderReserved { value: u32 },
    #[error("section {index} has unknown kind {kind}: the section table is corrupt")]
    UnknownSection { index: usize, kind: u32 },
    #[error("section {index} ({kind}) at offset {offset} should start at {expected}: sections must follow each other")]
    SectionMisplaced { index: usize, kind: &'static str, offset: u64, expected: u64 },
    #[error("section {index} ({kind}) ends at byte {end}, past the end of the {len}-byte file: the file is truncated")]
    SectionTruncated { index: usize, kind: &'static str, end: u64, len: usize },
    #[error("section {index} ({kind}) has checksum {stored:#010x} in the table, its bytes give {computed:#010x}: the section is corrupt")]
    SectionChecksum { index: usize, kind: &'static str, stored: u32, computed: u32 },
    #[error("the file has {extra} bytes after its last section")]
    TrailingBytes { extra: usize },
    #[error("the snapshot has {count} {kind} sections, it needs {need}")]
    SectionCount { kind: &'static str, count: usize, need: &'static str },
    #[error("cannot decode the {kind} section")]
    Decode {
        kind: &'static str,
        #[source]
        source: CodecError,
    },
    #[error("inconsistent snapshot: {0}")]
    Inconsistent(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Machine = 1,
    Vcpu = 2,
    Vm = 3,
    Devices = 4,
    Memory = 5,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        [Kind::Machine, Kind::Vcpu, Kind::Vm, Kind::Devices, Kind::Memory].into_iter().find(|k| *k as u32 == v)
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Machine => "machine",
            Kind::Vcpu => "vcpu",
            Kind::Vm => "vm",
            Kind::Devices => "devices",
            Kind::Memory => "memory",
        }
    }
}

/// The bytes of a state file holding `s`.
pub fn encode(s: &Snapshot) -> Vec<u8> {
    let mut sections: Vec<(Kind, u32, Vec<u8>)> = vec![(Kind::Machine, 0, encode_machine(&s.machine))];
    for v in &s.vcpus {
        sections.push((Kind::Vcpu, v.id, encode_vcpu(v)));
    }
    sections.push((Kind::Vm, 0, encode_vm(&s.vm)));
    sections.push((Kind::Devices, 0, encode_devices(&s.devices)));
    sections.push((Kind::Memory, 0, encode_memory(&s.memory)));

    let mut table = Encoder::default();
    let mut offset = (HEADER_LEN + ENTRY_LEN * sections.len()) as u64;
    for (kind, index, bytes) in &sections {
        table.u32(*kind as u32).u32(*index).u64(offset).u64(bytes.len() as u64).u32(crc32c(bytes)).u32(0);
        offset += bytes.len() as u64;
    }
    let mut head = Encoder::default();
    head.raw(&MAGIC).u32(VERSION).u32(sections.len() as u32);
    let crc = crate::codec::crc32c_append(crc32c(&head.buf), &table.buf);
    head.u32(crc).u32(0).raw(&table.buf);
    for (_, _, bytes) in &sections {
        head.raw(bytes);
    }
    head.buf
}

/// Recomputes every section checksum and the header checksum of a state
/// file after a deliberate change, so that the change reaches the section
/// decoders (tests and the fuzz target use it; any input, no panic).
pub fn reseal(bytes: &mut [u8]) {
    let field = |b: &[u8], at: usize, n: usize| {
        b.get(at..at + n).map(|f| f.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x)))
    };
    let Some(count) = field(bytes, 12, 4) else { return };
    let count = (count as usize).min(bytes.len() / ENTRY_LEN);
    for i in 0..count {
        let e = HEADER_LEN + ENTRY_LEN * i;
        let (Some(off), Some(len)) = (field(bytes, e + 8, 8), field(bytes, e + 16, 8)) else { break };
        let body =
            usize::try_from(off).ok().zip(usize::try_from(len).ok()).and_then(|(o, l)| bytes.get(o..o.checked_add(l)?));
        if let (Some(body), true) = (body, e + 28 <= bytes.len()) {
            let crc = crc32c(body);
            bytes[e + 24..e + 28].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let table_end = (HEADER_LEN + ENTRY_LEN * count).min(bytes.len());
    if table_end >= HEADER_LEN {
        let crc = crate::codec::crc32c_append(crc32c(&bytes[..16]), &bytes[HEADER_LEN..table_end]);
        bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Reads a state file. Pure: no KVM, no files, any input.
///
/// # Errors
///
/// A [`SnapshotError`] naming what is wrong: another format version, a
/// truncated or corrupt header, table or section, a field that cannot be
/// decoded, or parts that contradict each other.
pub fn parse(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let sections = sections(bytes)?;
    let only = |kind: Kind| -> Result<&[u8], SnapshotError> {
        let found: Vec<&[u8]> = sections.iter().filter(|(k, _)| *k == kind).map(|(_, b)| *b).collect();
        match found.as_slice() {
            [one] => Ok(one),
            _ => Err(SnapshotError::SectionCount { kind: kind.name(), count: found.len(), need: "exactly 1" }),
        }
    };
    let decode = |kind: Kind| move |source| SnapshotError::Decode { kind: kind.name(), source };
    let machine = decode_machine(only(Kind::Machine)?).map_err(decode(Kind::Machine))?;
    let vcpus = sections
        .iter()
        .filter(|(k, _)| *k == Kind::Vcpu)
        .map(|(_, b)| decode_vcpu(b).map_err(decode(Kind::Vcpu)))
        .collect::<Result<Vec<_>, _>>()?;
    let vm = decode_vm(only(Kind::Vm)?).map_err(decode(Kind::Vm))?;
    let devices = decode_devices(only(Kind::Devices)?).map_err(decode(Kind::Devices))?;
    let memory = decode_memory(only(Kind::Memory)?).map_err(decode(Kind::Memory))?;
    let snapshot = Snapshot { machine, vcpus, vm, devices, memory };
    snapshot.check_consistent().map_err(SnapshotError::Inconsistent)?;
    Ok(snapshot)
}

/// Checks the header and the table; returns each section's kind and bytes.
fn sections(bytes: &[u8]) -> Result<Vec<(Kind, &[u8])>, SnapshotError> {
    if bytes.len() < HEADER_LEN {
        return Err(SnapshotError::TooShort { len: bytes.len() });
    }
    if bytes[..8] != MAGIC {
        return Err(SnapshotError::BadMagic { found: bytes[..8].to_vec() });
    }
    let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if version != VERSION {
        return Err(SnapshotError::Version { found: version });
    }
    let count = word(12);
    if count > MAX_SECTIONS {
        return Err(SnapshotError::TooManySections { count });
    }
    let table_end = HEADER_LEN + ENTRY_LEN * count as usize;
    if bytes.len() < table_end {
        return Err(SnapshotError::TableTruncated { need: table_end, len: bytes.len() });
    }
    let stored = word(16);
    let computed = crate::codec::crc32c_append(crc32c(&bytes[..16]), &bytes[HEADER_LEN..table_end]);
    if stored != computed {
        return Err(SnapshotError::HeaderChecksum { stored, computed });
    }
    if word(20) != 0 {
        return Err(SnapshotError::HeaderReserved { value: word(20) });
    }
    let mut table = Decoder::new(&bytes[HEADER_LEN..table_end]);
    let mut expected = table_end as u64;
    let mut out = Vec::with_capacity(count as usize);
    for index in 0..count as usize {
        // The table is checksummed and exactly `count` entries long: these reads cannot fail.
        let field = |r: Result<u64, CodecError>| r.unwrap_or_default();
        let raw_kind = field(table.u32("kind").map(u64::from)) as u32;
        let _index = field(table.u32("index").map(u64::from));
        let offset = field(table.u64("offset"));
        let len = field(table.u64("length"));
        let crc = field(table.u32("crc").map(u64::from)) as u32;
        let _reserved = field(table.u32("reserved").map(u64::from));
        let kind = Kind::from_u32(raw_kind).ok_or(SnapshotError::UnknownSection { index, kind: raw_kind })?;
        if offset != expected {
            return Err(SnapshotError::SectionMisplaced { index, kind: kind.name(), offset, expected });
        }
        let end = offset.saturating_add(len);
        if end > bytes.len() as u64 {
            return Err(SnapshotError::SectionTruncated { index, kind: kind.name(), end, len: bytes.len() });
        }
        let body = &bytes[offset as usize..end as usize];
        let computed = crc32c(body);
        if computed != crc {
            return Err(SnapshotError::SectionChecksum { index, kind: kind.name(), stored: crc, computed });
        }
        out.push((kind, body));
        expected = end;
    }
    if (expected as usize) < bytes.len() {
        return Err(SnapshotError::TrailingBytes { extra: bytes.len() - expected as usize });
    }
    Ok(out)
}

fn encode_machine(m: &Machine) -> Vec<u8> {
    let mut e = Encoder::default();
    e.u64(m.ram_mib).bool(m.timers).u32(m.vcpus);
    e.buf
}

fn decode_machine(b: &[u8]) -> Result<Machine, CodecError> {
    let mut d = Decoder::new(b);
    let m = Machine { ram_mib: d.u64("RAM size")?, timers: d.bool("timers flag")?, vcpus: d.u32("vCPU count")? };
    d.finish("the machine section")?;
    Ok(m)
}

fn optional<T>(e: &mut Encoder, v: &Option<T>, put: impl FnOnce(&mut Encoder, &T)) {
    e.bool(v.is_some());
    if let Some(v) = v {
        put(e, v);
    }
}

fn read_optional<'a, T>(
    d: &mut Decoder<'a>,
    what: &'static str,
    get: impl FnOnce(&mut Decoder<'a>) -> Result<T, CodecError>,
) -> Result<Option<T>, CodecError> {
    if d.bool(what)? {
        get(d).map(Some)
    } else {
        Ok(None)
    }
}

fn encode_fpu(e: &mut Encoder, f: &kvm_fpu) {
    for r in &f.fpr {
        e.raw(r);
    }
    e.u16(f.fcw).u16(f.fsw).u8(f.ftwx).u8(f.pad1).u16(f.last_opcode).u64(f.last_ip).u64(f.last_dp);
    for x in &f.xmm {
        e.raw(x);
    }
    e.u32(f.mxcsr).u32(f.pad2);
}

fn decode_fpu(d: &mut Decoder<'_>) -> Result<kvm_fpu, CodecError> {
    let mut f = kvm_fpu::default();
    for r in &mut f.fpr {
        r.copy_from_slice(d.take(16, "FPU register")?);
    }
    (f.fcw, f.fsw, f.ftwx, f.pad1) = (d.u16("fcw")?, d.u16("fsw")?, d.u8("ftwx")?, d.u8("FPU padding")?);
    (f.last_opcode, f.last_ip, f.last_dp) = (d.u16("last opcode")?, d.u64("last ip")?, d.u64("last dp")?);
    for x in &mut f.xmm {
        x.copy_from_slice(d.take(16, "XMM register")?);
    }
    (f.mxcsr, f.pad2) = (d.u32("mxcsr")?, d.u32("FPU padding")?);
    Ok(f)
}

fn encode_vcpu(v: &VcpuState) -> Vec<u8> {
    let mut e = Encoder::default();
    e.u32(v.id).u32(v.cpuid.len() as u32);
    for entry in &v.cpuid {
        e.pod(entry);
    }
    optional(&mut e, &v.tsc_khz, |e, k| {
        e.u32(*k);
    });
    e.pod(&v.regs).pod(&v.sregs);
    encode_fpu(&mut e, &v.fpu);
    optional(&mut e, &v.xsave, |e, x| {
        for w in x.iter() {
            e.u32(*w);
        }
    });
    optional(&mut e, &v.xcrs, |e, x| {
        e.pod(x);
    });
    e.u32(v.msrs.len() as u32);
    for &(index, data) in &v.msrs {
        e.u32(index).u64(data);
    }
    optional(&mut e, &v.lapic, |e, l| {
        e.pod(l);
    });
    e.pod(&v.events).pod(&v.mp_state).pod(&v.debugregs);
    e.buf
}

fn decode_vcpu(b: &[u8]) -> Result<VcpuState, CodecError> {
    let mut d = Decoder::new(b);
    let id = d.u32("vCPU id")?;
    let n = d.count("CPUID entries", MAX_CPUID)?;
    let cpuid = (0..n).map(|_| d.pod::<kvm_cpuid_entry2>("CPUID entry")).collect::<Result<_, _>>()?;
    let tsc_khz = read_optional(&mut d, "TSC frequency flag", |d| d.u32("TSC frequency"))?;
    let regs = d.pod::<kvm_regs>("general registers")?;
    let sregs = d.pod::<kvm_sregs>("special registers")?;
    let fpu = decode_fpu(&mut d)?;
    let xsave = read_optional(&mut d, "XSAVE flag", |d| {
        let mut words = Box::new([0u32; XSAVE_WORDS]);
        for w in words.iter_mut() {
            *w = d.u32("XSAVE area")?;
        }
        Ok(words)
    })?;
    let xcrs = read_optional(&mut d, "XCR flag", |d| d.pod::<kvm_xcrs>("XCRs"))?;
    let n = d.count("MSRs", MAX_MSRS)?;
    let msrs = (0..n).map(|_| Ok((d.u32("MSR index")?, d.u64("MSR value")?))).collect::<Result<_, CodecError>>()?;
    let lapic = read_optional(&mut d, "LAPIC flag", |d| d.pod::<kvm_lapic_state>("LAPIC"))?;
    let events = d.pod::<kvm_vcpu_events>("vCPU events")?;
    let mp_state = d.pod::<kvm_mp_state>("MP state")?;
    let debugregs = d.pod::<kvm_debugregs>("debug registers")?;
    d.finish("a vcpu section")?;
    Ok(VcpuState { id, cpuid, tsc_khz, regs, sregs, fpu, xsave, xcrs, msrs, lapic, events, mp_state, debugregs })
}

fn encode_vm(v: &VmState) -> Vec<u8> {
    let mut e = Encoder::default();
    optional(&mut e, &v.irqchip, |e, chips| {
        for c in chips {
            e.pod(&c.0);
        }
    });
    optional(&mut e, &v.pit, |e, p| {
        e.pod(p);
    });
    optional(&mut e, &v.clock, |e, c| {
        e.pod(c);
    });
    e.buf
}

fn decode_vm(b: &[u8]) -> Result<VmState, CodecError> {
    let mut d = Decoder::new(b);
    let irqchip = read_optional(&mut d, "irqchip flag", |d| {
        let mut chip = || d.pod::<kvm_irqchip>("irqchip").map(Chip);
        Ok([chip()?, chip()?, chip()?])
    })?;
    let pit = read_optional(&mut d, "PIT flag", |d| d.pod::<kvm_pit_state2>("PIT"))?;
    let clock = read_optional(&mut d, "clock flag", |d| d.pod::<kvm_clock_data>("KVM clock"))?;
    d.finish("the vm section")?;
    Ok(VmState { irqchip, pit, clock })
}

const DEV_SERIAL: u8 = 1;
const DEV_DEBUG_EXIT: u8 = 2;
const DEV_POST: u8 = 3;
const DEV_SCRATCH: u8 = 4;
const DEV_I8042: u8 = 5;
const DEV_TESTDEV_IRQ: u8 = 6;
const DEV_IB700: u8 = 7;

fn encode_devices(devices: &[DeviceRecord]) -> Vec<u8> {
    let mut e = Encoder::default();
    e.u32(devices.len() as u32);
    for dev in devices {
        let p = &dev.placement;
        e.u8(match p.bus {
            BusKind::Pio => 0,
            BusKind::Mmio => 1,
        });
        e.u64(p.base).u64(p.len).str(&p.name);
        match &dev.state {
            DeviceState::Serial(s) => {
                e.u8(DEV_SERIAL).u8(s.ier).u8(s.lcr).u8(s.mcr).u8(s.fcr).u8(s.scr).u16(s.divisor);
                e.bool(s.thr_empty_pending).blob(&s.rx).blob(&s.pending);
            }
            DeviceState::DebugExit => {
                e.u8(DEV_DEBUG_EXIT);
            }
            DeviceState::PostCode { last } => {
                e.u8(DEV_POST).u8(*last);
            }
            DeviceState::Scratch { value } => {
                e.u8(DEV_SCRATCH).u64(*value);
            }
            DeviceState::I8042 => {
                e.u8(DEV_I8042);
            }
            DeviceState::TestDevIrq => {
                e.u8(DEV_TESTDEV_IRQ);
            }
            DeviceState::Ib700 { remaining_ns, timeout_s } => {
                e.u8(DEV_IB700).u32(*timeout_s);
                optional(&mut e, remaining_ns, |e, n| {
                    e.u64(*n);
                });
            }
        }
    }
    e.buf
}

fn decode_device(d: &mut Decoder<'_>) -> Result<DeviceRecord, CodecError> {
    let bus = match d.u8("bus")? {
        0 => BusKind::Pio,
        1 => BusKind::Mmio,
        v => return Err(CodecError::BadValue { what: "bus", value: u64::from(v) }),
    };
    let (base, len) = (d.u64("device base")?, d.u64("device length")?);
    let name = d.str("device name", MAX_NAME)?.to_string();
    let state = match d.u8("device kind")? {
        DEV_SERIAL => {
            let (ier, lcr, mcr, fcr, scr) = (d.u8("IER")?, d.u8("LCR")?, d.u8("MCR")?, d.u8("FCR")?, d.u8("SCR")?);
            let divisor = d.u16("divisor")?;
            let thr_empty_pending = d.bool("THR-empty flag")?;
            let rx = d.blob("receive FIFO", crate::devices::serial::RX_FIFO_CAPACITY as u64)?.to_vec();
            let pending = d.blob("pending input", MAX_PENDING_INPUT)?.to_vec();
            DeviceState::Serial(SerialState { ier, lcr, mcr, fcr, scr, divisor, thr_empty_pending, rx, pending })
        }
        DEV_DEBUG_EXIT => DeviceState::DebugExit,
        DEV_POST => DeviceState::PostCode { last: d.u8("POST code")? },
        DEV_SCRATCH => DeviceState::Scratch { value: d.u64("scratch register")? },
        DEV_I8042 => DeviceState::I8042,
        DEV_TESTDEV_IRQ => DeviceState::TestDevIrq,
        DEV_IB700 => {
            let timeout_s = d.u32("IB700 timeout")?;
            let remaining_ns = read_optional(d, "IB700 running flag", |d| d.u64("IB700 time left"))?;
            DeviceState::Ib700 { remaining_ns, timeout_s }
        }
        v => return Err(CodecError::BadValue { what: "device kind", value: u64::from(v) }),
    };
    Ok(DeviceRecord { placement: Placement { bus, base, len, name }, state })
}

fn decode_devices(b: &[u8]) -> Result<Vec<DeviceRecord>, CodecError> {
    let mut d = Decoder::new(b);
    let n = d.count("devices", MAX_DEVICES)?;
    let devices = (0..n).map(|_| decode_device(&mut d)).collect::<Result<_, _>>()?;
    d.finish("the devices section")?;
    Ok(devices)
}

fn encode_memory(m: &MemoryLayout) -> Vec<u8> {
    let mut e = Encoder::default();
    e.u64(m.id).u32(m.ranges.len() as u32);
    for r in &m.ranges {
        e.u64(r.first).u64(r.count).u32(r.crc);
    }
    e.buf
}

fn decode_memory(b: &[u8]) -> Result<MemoryLayout, CodecError> {
    let mut d = Decoder::new(b);
    let id = d.u64("memory file id")?;
    let n = d.count("page ranges", MAX_RANGES)?;
    let ranges = (0..n)
        .map(|_| Ok(PageRange { first: d.u64("first page")?, count: d.u64("page count")?, crc: d.u32("range CRC")? }))
        .collect::<Result<_, CodecError>>()?;
    d.finish("the memory section")?;
    Ok(MemoryLayout { id, ranges })
}
