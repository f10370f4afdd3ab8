//! The state file's round trip, and the parser on hostile input: cut at
//! every offset, every header and table byte flipped, random mutations
//! (with and without checksums repaired): always a named error, never a panic.

use super::format::{encode, parse, SnapshotError, MAGIC};
use super::state::*;
use crate::bus::{BusKind, Placement};
use crate::devices::{DeviceState, SerialState};
use crate::test_rng::Rng;

/// A snapshot as the VMM would write it for a guest with `--timers`.
pub(crate) fn sample(timers: bool) -> Snapshot {
    let mut regs = kvm_bindings::kvm_regs { rip: 0x10_0042, rsp: 0x8_0000, rflags: 0x202, ..Default::default() };
    regs.rax = 0x1122_3344_5566_7788;
    let mut sregs =
        kvm_bindings::kvm_sregs { cr0: 0x8000_0011, cr3: 0x9000, cr4: 0x20, efer: 0x500, ..Default::default() };
    sregs.cs.l = 1;
    let cpuid = vec![kvm_bindings::kvm_cpuid_entry2 { function: 0x4000_0000, ebx: 0x7472_6956, ..Default::default() }];
    let vcpu = VcpuState {
        id: 0,
        cpuid,
        tsc_khz: Some(2_000_000),
        regs,
        sregs,
        fpu: kvm_bindings::kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() },
        xsave: Some(Box::new([7u32; XSAVE_WORDS])),
        xcrs: Some(kvm_bindings::kvm_xcrs { nr_xcrs: 1, ..Default::default() }),
        msrs: vec![(0x10, 12345), (0xc000_0080, 0x500)],
        lapic: timers.then(kvm_bindings::kvm_lapic_state::default),
        events: kvm_bindings::kvm_vcpu_events::default(),
        mp_state: kvm_bindings::kvm_mp_state::default(),
        debugregs: kvm_bindings::kvm_debugregs::default(),
    };
    let chip = |chip_id| Chip(kvm_bindings::kvm_irqchip { chip_id, ..Default::default() });
    let vm = VmState {
        irqchip: timers.then(|| [chip(0), chip(1), chip(2)]),
        pit: timers.then(kvm_bindings::kvm_pit_state2::default),
        clock: Some(kvm_bindings::kvm_clock_data { clock: 99, ..Default::default() }),
    };
    let place = |bus, base, len, name: &str| Placement { bus, base, len, name: name.to_string() };
    let uart =
        SerialState { ier: 1, lcr: 3, divisor: 1, rx: b"ab".to_vec(), pending: b"cd".to_vec(), ..Default::default() };
    let devices = vec![
        DeviceRecord { placement: place(BusKind::Pio, 0x3f8, 8, "uart"), state: DeviceState::Serial(uart) },
        DeviceRecord { placement: place(BusKind::Pio, 0xf4, 4, "debug-exit"), state: DeviceState::DebugExit },
        DeviceRecord { placement: place(BusKind::Pio, 0x80, 1, "post"), state: DeviceState::PostCode { last: 9 } },
        DeviceRecord {
            placement: place(BusKind::Pio, 0x441, 4, "ib700"),
            state: DeviceState::Ib700 { remaining_ns: Some(1_500_000_000), timeout_s: 2 },
        },
        DeviceRecord {
            placement: place(BusKind::Mmio, 0xd000_0000, 0x1000, "scratch"),
            state: DeviceState::Scratch { value: 5 },
        },
    ];
    let memory = MemoryLayout {
        id: 0xdead_beef,
        ranges: vec![PageRange { first: 0, count: 16, crc: 1 }, PageRange { first: 256, count: 3, crc: 2 }],
    };
    Snapshot { machine: Machine { ram_mib: 128, timers, vcpus: 1 }, vcpus: vec![vcpu], vm, devices, memory }
}

#[test]
fn a_snapshot_survives_the_round_trip_bit_for_bit() {
    for timers in [false, true] {
        let s = sample(timers);
        let bytes = encode(&s);
        let back = parse(&bytes).unwrap();
        assert_eq!(encode(&back), bytes);
        assert_eq!(back.vcpus[0].regs, s.vcpus[0].regs);
        assert_eq!(back.vcpus[0].msrs, s.vcpus[0].msrs);
        assert_eq!(back.devices, s.devices);
        assert_eq!(back.memory, s.memory);
        assert_eq!(back.machine, s.machine);
        assert!(back.describe().contains("machine: 128 MiB RAM, 1 vCPU(s)"), "{}", back.describe());
    }
}

#[test]
fn another_version_and_foreign_files_are_named() {
    let mut bytes = encode(&sample(true));
    bytes[8] = 2;
    let e = parse(&bytes).unwrap_err();
    assert_eq!(e, SnapshotError::Version { found: 2 });
    assert!(e.to_string().contains("version 2, but this vmm reads version 1 only"), "{e}");
    assert!(matches!(parse(b"\x7fELF and then some bytes of a kernel"), Err(SnapshotError::BadMagic { .. })));
    assert_eq!(parse(&MAGIC).unwrap_err(), SnapshotError::TooShort { len: 8 });
}

#[test]
fn a_cut_at_every_offset_is_refused() {
    let bytes = encode(&sample(true));
    for len in 0..bytes.len() {
        let e = parse(&bytes[..len]).expect_err("a truncated snapshot parsed");
        assert!(!e.to_string().is_empty());
        if len >= 24 + 32 * 5 {
            assert!(matches!(e, SnapshotError::SectionTruncated { .. }), "cut at {len}: {e}");
        }
    }
}

#[test]
fn every_flipped_header_or_table_bit_is_refused() {
    let bytes = encode(&sample(true));
    let table_end = 24 + 32 * 5;
    for at in 0..table_end {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[at] ^= 1 << bit;
            let e = parse(&b).expect_err("a flipped header bit went unnoticed");
            assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn every_flipped_section_byte_is_caught_by_its_checksum() {
    let bytes = encode(&sample(true));
    for at in (24 + 32 * 5)..bytes.len() {
        let mut b = bytes.clone();
        b[at] ^= 0x5a;
        assert!(matches!(parse(&b), Err(SnapshotError::SectionChecksum { .. })), "byte {at}");
    }
}

#[test]
fn random_mutations_are_named_errors_and_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let originals = [encode(&sample(true)), encode(&sample(false))];
    let mut decoded = 0;
    for round in 0..20_000 {
        let mut b = originals[round % 2].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 => {
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
                1 => {
                    let at = rng.below(b.len());
                    b.insert(at, rng.next() as u8);
                }
                2 => {
                    let at = rng.below(b.len());
                    b.remove(at);
                }
                _ => {
                    let at = rng.below(b.len().saturating_sub(4));
                    let v = [0u32, 1, 0xff, 0xffff_ffff, 0x8000_0000][rng.below(5)];
                    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        // Half the time, repair the checksums so the decoders see the damage.
        if round % 4 < 2 && b.len() >= 24 {
            let count = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
            if count <= 16 && b.len() >= 24 + 32 * count {
                super::format::reseal(&mut b);
            }
        }
        match parse(&b) {
            Ok(s) => {
                decoded += 1;
                s.check_consistent().unwrap();
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    // A mutation can leave a valid snapshot (a register value changed): fine, but rare.
    assert!(decoded < 10_000, "{decoded} mutated snapshots parsed");
}

#[test]
fn contradictions_between_parts_are_named() {
    let mut s = sample(true);
    s.vm.pit = None;
    let e = parse(&encode(&s)).unwrap_err().to_string();
    assert!(e.contains("holds irqchip state") || e.contains("has no PIT state"), "{e}");
    let mut s = sample(false);
    s.memory.ranges.push(PageRange { first: 1 << 40, count: 1, crc: 0 });
    let e = parse(&encode(&s)).unwrap_err().to_string();
    assert!(e.contains("past the 32768 pages of RAM"), "{e}");
    let mut s = sample(false);
    s.machine.vcpus = 2;
    assert!(parse(&encode(&s)).unwrap_err().to_string().contains("the machine has 2 vCPUs"));
}

#[test]
fn a_restore_with_other_options_is_refused_naming_them() {
    let m = Machine { ram_mib: 128, timers: true, vcpus: 1 };
    assert!(m.check_matches(&super::RequestedMachine::default()).is_ok());
    let e = m.check_matches(&super::RequestedMachine { mem_mib: Some(256), timers: None }).unwrap_err();
    assert_eq!(e, "the snapshot was made with --mem 128, this restore asks for --mem 256");
    let m = Machine { timers: false, ..m };
    let e = m.check_matches(&super::RequestedMachine { mem_mib: Some(128), timers: Some(true) }).unwrap_err();
    assert!(e.contains("made without --timers"), "{e}");
}
