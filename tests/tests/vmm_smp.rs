//! SMP guests (`--vcpus N`): the `smp` guest finds its CPUs in the MP
//! table, starts them with INIT-SIPI-SIPI, counts with `lock xadd` and
//! ping-pongs IPIs; its output for N = 1, 2, 4 is the fixture next to it
//! (`guests/asm/smp.out`, `smp-2.out`, `smp-4.out`). Also: per-vCPU
//! statistics that sum to the total, tagged traces, snapshots and live
//! migration of every vCPU, the vCPU counts refused, the options refused
//! with several vCPUs,
//! an AP never started, an AP that ends the run or fails it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::{binary, kvm_available, process, temp_file, temp_path, vmm, Outcome};

/// Bound on every run, so a broken guest fails the test instead of hanging it.
const TIMEOUT: &str = "30";

fn expected(vcpus: u32) -> &'static str {
    match vcpus {
        1 => include_str!("../../guests/asm/smp.out"),
        2 => include_str!("../../guests/asm/smp-2.out"),
        4 => include_str!("../../guests/asm/smp-4.out"),
        _ => unreachable!("no fixture for {vcpus} vCPUs"),
    }
}

/// The `vmm` binary as a process of its own (snapshots use signals and files).
fn vmm_process(args: &[&str]) -> Outcome {
    process("vmm", args, b"")
}

#[test]
fn the_smp_guest_prints_its_fixture_with_one_two_and_four_vcpus() {
    if !kvm_available() {
        return;
    }
    for n in [1u32, 2, 4] {
        let o = vmm(&["run", "smp", "--vcpus", &n.to_string(), "--timeout", TIMEOUT]);
        assert_eq!(o.stdout, expected(n), "{n} vCPUs: stderr was {}", o.stderr);
        assert_eq!(o.status, 0, "{n} vCPUs: {}", o.stderr);
        let total = format!("counter {}, exact", n * 20000);
        assert!(o.stdout.contains(&total), "every lock xadd of {n} CPUs counted: {}", o.stdout);
        assert!(o.stdout.contains(&format!("the MP table lists {n} CPU(s)")), "{}", o.stdout);
    }
}

#[test]
fn the_fixtures_list_one_line_per_ap_with_apic_id_and_cpuid_agreeing() {
    for n in [2u32, 4] {
        let aps: Vec<&str> = expected(n).lines().filter(|l| l.starts_with("smp: AP up")).collect();
        assert_eq!(aps.len() as u32, n - 1);
        for (i, line) in aps.iter().enumerate() {
            let id = i + 1;
            assert_eq!(*line, format!("smp: AP up in long mode, APIC id {id}, CPUID says {id}"));
        }
    }
}

#[test]
fn per_vcpu_statistics_are_printed_and_sum_to_the_total() {
    if !kvm_available() {
        return;
    }
    let o = vmm(&["run", "smp", "--vcpus", "4", "--stats", "--timeout", TIMEOUT]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    let totals: Vec<u64> = o
        .stderr
        .lines()
        .filter(|l| l.starts_with("total "))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(totals.len(), 5, "four vCPUs and the sum: {}", o.stderr);
    assert_eq!(totals[..4].iter().sum::<u64>(), totals[4], "{}", o.stderr);
    for i in 0..4 {
        assert!(o.stderr.contains(&format!("vCPU {i}:\n")), "{}", o.stderr);
    }
    assert!(o.stderr.contains("all 4 vCPUs:"), "{}", o.stderr);
    // Every AP prints one line: its exits are that line's bytes.
    let ap_line = expected(4).lines().find(|l| l.starts_with("smp: AP")).unwrap().len() as u64 + 1;
    assert!(totals[1..4].iter().all(|&t| t == ap_line), "{totals:?}, an AP line is {ap_line} bytes");
}

#[test]
fn the_trace_tags_each_line_with_its_vcpu_and_shows_no_exit_for_the_lapic() {
    if !kvm_available() {
        return;
    }
    let o = vmm(&["run", "smp", "--vcpus", "2", "--trace", "--timeout", TIMEOUT]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    let exits: Vec<&str> = o.stderr.lines().filter(|l| l.contains(" rip=")).collect();
    assert!(exits.iter().all(|l| l.starts_with("[vcpu 0] ") || l.starts_with("[vcpu 1] ")), "{}", o.stderr);
    assert!(exits.iter().any(|l| l.starts_with("[vcpu 1] ")), "the AP's exits are traced");
    // INIT, SIPI and the IPIs go through the in-kernel LAPIC: no MMIO exit.
    assert!(!o.stderr.contains("0xfee00"), "{}", o.stderr);
    assert!(o.stderr.contains("vmm: boot: MP table at 0xf0000"), "{}", o.stderr);
}

#[test]
fn a_snapshot_of_a_running_two_vcpu_guest_restores_and_finishes_its_output() {
    if !kvm_available() {
        return;
    }
    // Before the AP starts (it is saved waiting for its SIPI), while both
    // print, and while both count.
    for exits in [20u64, 110, 150, 185] {
        let path = temp_path(&format!("smp-snap-{exits}"));
        let path = path.to_str().unwrap();
        let n = exits.to_string();
        let args =
            ["run", "smp", "--vcpus", "2", "--snapshot", path, "--snapshot-after-exits", &n, "--snapshot-and-stop"];
        let first = vmm_process(&[&args[..], &["--timeout", TIMEOUT]].concat());
        assert_eq!(first.status, 79, "at {exits}: {}", first.stderr);
        let info = vmm_process(&["snapshot-info", path]);
        assert!(info.stdout.contains("2 vCPU(s)"), "{}{}", info.stdout, info.stderr);
        let restored = vmm_process(&["restore", path, "--timeout", TIMEOUT]);
        assert_eq!(restored.status, 0, "at {exits}: {}", restored.stderr);
        assert_eq!(first.stdout + &restored.stdout, expected(2), "at {exits}");
    }
}

#[test]
fn a_two_vcpu_guest_migrated_live_carries_on_on_the_destination_with_both_vcpus() {
    if !kvm_available() {
        return;
    }
    let mut receiver = Command::new(binary("vmm"))
        .args(["receive", "--listen", "127.0.0.1:0", "--timeout", TIMEOUT])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vmm receive");
    let mut stderr = BufReader::new(receiver.stderr.take().expect("piped stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("the listening line");
    let addr = line.trim().strip_prefix("vmm receive: listening on ").unwrap_or_else(|| panic!("{line}")).to_string();
    let drain = std::thread::spawn(move || std::io::read_to_string(&mut stderr).unwrap_or_default());
    let args = ["run", "smp", "--vcpus", "2", "--migrate-to", &addr, "--migrate-after-ms", "20", "--timeout", TIMEOUT];
    let source = vmm_process(&args);
    let received = receiver.wait_with_output().expect("wait for vmm receive");
    let received_err = drain.join().unwrap();
    assert_eq!(source.status, 80, "the source hands the guest over: {}", source.stderr);
    assert_eq!(received.status.code(), Some(0), "{received_err}");
    let destination = String::from_utf8_lossy(&received.stdout);
    assert!(!destination.is_empty(), "the guest went on printing on the destination");
    assert_eq!(source.stdout + &destination, expected(2));
}

#[test]
fn zero_vcpus_and_more_than_the_limit_are_refused() {
    if !kvm_available() {
        return;
    }
    let o = vmm(&["run", "hello64", "--vcpus", "0"]);
    assert_eq!(o.status, 2, "{}", o.stderr);
    assert!(o.stderr.contains("--vcpus 0: a guest needs at least one vCPU"), "{}", o.stderr);
    let o = vmm(&["run", "hello64", "--vcpus", "255"]);
    assert_eq!(o.status, 2, "{}", o.stderr);
    assert!(o.stderr.contains("--vcpus 255 is more than"), "{}", o.stderr);
    assert_eq!(o.stdout, "", "nothing ran");
    // The limit itself runs (unless this KVM's own limit is lower, and says so).
    let o = vmm(&["run", "hello64", "--vcpus", "254", "--timeout", TIMEOUT]);
    if o.status == 2 {
        assert!(o.stderr.contains("KVM_CAP_MAX_VCPUS"), "{}", o.stderr);
    } else {
        assert_eq!(
            (o.status, o.stdout.as_str()),
            (0, guests::find("hello64").unwrap().expected_output),
            "{}",
            o.stderr
        );
    }
}

#[test]
fn the_smp_guest_runs_the_first_sixteen_of_more_cpus_and_counts_exactly() {
    if !kvm_available() {
        return;
    }
    let o = vmm(&["run", "smp", "--vcpus", "18", "--timeout", TIMEOUT]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(
        o.stdout.starts_with("smp: the MP table lists 18 CPU(s)\nsmp: this guest runs the first 16\n"),
        "{}",
        o.stdout
    );
    assert_eq!(o.stdout.lines().filter(|l| l.starts_with("smp: AP up")).count(), 15);
    assert!(o.stdout.contains("counter 320000, exact"), "{}", o.stdout);
}

#[test]
fn options_not_supported_with_several_vcpus_are_refused_by_name() {
    if !kvm_available() {
        return;
    }
    for (flags, what) in [
        (&["--gdb", "127.0.0.1:0"][..], "--gdb with --vcpus 2"),
        (&["--checkpoint-every", "100"][..], "fault tolerance"),
    ] {
        let o = vmm(&[&["run", "smp", "--vcpus", "2"][..], flags].concat());
        assert_eq!(o.status, 2, "{flags:?}: {}", o.stderr);
        assert!(o.stderr.contains(what) && o.stderr.contains("not supported yet"), "{flags:?}: {}", o.stderr);
    }
}

#[test]
fn an_ap_that_is_never_started_does_not_keep_the_run_alive() {
    if !kvm_available() {
        return;
    }
    let started = Instant::now();
    let o = vmm(&["run", "hello64", "--vcpus", "4", "--timeout", TIMEOUT]);
    assert_eq!((o.status, o.stdout.as_str()), (0, guests::find("hello64").unwrap().expected_output), "{}", o.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
    // A BSP that spins: the timeout names it and stops the waiting APs too.
    let spin = temp_file("smp-spin.bin", &[0xeb, 0xfe]);
    let o = vmm(&["run", spin.to_str().unwrap(), "--vcpus", "3", "--timeout", "0.3"]);
    assert_eq!(o.status, 76, "{}", o.stderr);
    assert!(o.stderr.contains("on vCPU 0 at rip=0x7c00 (16-bit real mode)"), "{}", o.stderr);
}

/// A protected-mode image loaded at 0x8000: the AP trampoline at 0x8000
/// (SIPI vector 8) runs `ap` in real mode; the BSP at 0x8100 sends
/// INIT-SIPI-SIPI to APIC id 1 and spins.
fn ap_image(ap: &[u8]) -> Vec<u8> {
    let mut image = ap.to_vec();
    image.resize(0x100, 0);
    let icr = |offset: u32, value: u32| {
        let mut m = vec![0xc7, 0x05]; // mov dword [abs32], imm32
        m.extend_from_slice(&(0xfee0_0000u32 + offset).to_le_bytes());
        m.extend_from_slice(&value.to_le_bytes());
        m
    };
    for (offset, value) in [(0x310, 1 << 24), (0x300, 0x4500), (0x310, 1 << 24), (0x300, 0x4608)] {
        image.extend(icr(offset, value));
    }
    image.extend_from_slice(&[0xeb, 0xfe]); // jmp $
    image
}

fn run_ap_image(name: &str, ap: &[u8]) -> Outcome {
    let image = temp_file(name, &ap_image(ap));
    let args = ["--mode", "protected", "--load-addr", "0x8000", "--entry", "0x8100", "--vcpus", "2"];
    vmm(&[&["run", image.to_str().unwrap()][..], &args, &["--timeout", TIMEOUT]].concat())
}

#[test]
fn an_ap_writing_the_debug_exit_port_ends_the_run_and_stops_the_bsp() {
    if !kvm_available() {
        return;
    }
    let o = run_ap_image("smp-ap-exit.bin", &[0xb0, 0x05, 0xe6, 0xf4, 0xeb, 0xfe]); // mov al,5; out 0xf4,al; jmp $
    assert_eq!(o.status, 5, "{}", o.stderr);
}

#[test]
fn a_fatal_exit_on_an_ap_ends_the_run_and_names_the_vcpu() {
    if !kvm_available() {
        return;
    }
    // cli; lidt [cs:0x18] (limit 0); protected mode; ud2: #UD with no IDT,
    // a triple fault (or an emulation failure on a nested KVM).
    let mut ap = vec![0xfa, 0x2e, 0x0f, 0x01, 0x1e, 0x18, 0x00]; // cli; lidt [cs:0x18]
    ap.extend_from_slice(&[0x0f, 0x20, 0xc0, 0x0c, 0x01, 0x0f, 0x22, 0xc0]); // mov eax,cr0; or al,1; mov cr0,eax
    ap.extend_from_slice(&[0x0f, 0x0b, 0xeb, 0xfe]); // ud2; jmp $
    ap.resize(0x20, 0);
    let o = run_ap_image("smp-ap-fatal.bin", &ap);
    assert!(o.status == 73 || o.status == 74, "{}: {}", o.status, o.stderr);
    assert!(o.stderr.contains("on vCPU 1 at rip="), "{}", o.stderr);
}

#[test]
fn the_bench_reports_the_ipi_round_trip() {
    if !kvm_available() {
        return;
    }
    let o = vmm(&["bench", "--only", "smp", "--repeat", "1"]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    let line = o.stdout.lines().find(|l| l.starts_with("(d) smp, IPI round trip")).expect(&o.stdout);
    let ns: f64 = line.split(": ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    assert!(ns > 0.0, "{line}");
    assert!(line.contains("(5 runs of 1000 round trips)"), "{line}");
}
