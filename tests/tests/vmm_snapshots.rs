//! Snapshots with the real `vmm` binary, each step a process of its own:
//! every built-in guest, snapshotted at several exit counts and restored
//! in a new process, prints exactly its uninterrupted output and ends with
//! its status (`ticks` across timer interrupts); a restore that leaves out
//! a part of the state is caught by the same comparison; damaged, foreign
//! and mismatched snapshots are refused with a message naming the problem.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tests::{binary, kvm_available, process, temp_path, Outcome};

/// Bound on every run, so a broken restore fails the test instead of hanging it.
const TIMEOUT: &str = "20";

fn vmm(args: &[&str], input: &str) -> Outcome {
    process("vmm", args, input.as_bytes())
}

fn snapshot_path(name: &str) -> PathBuf {
    temp_path(&format!("snap-{name}"))
}

/// Runs `guest` up to `exits` exits, snapshots and stops; then restores.
/// Returns (first run, restored run), or None if the guest ended first.
fn snapshot_and_restore(guest: &str, exits: u64, restore_flags: &[&str], input: &str) -> Option<(Outcome, Outcome)> {
    let path = snapshot_path(&format!("{guest}-{exits}-{}", restore_flags.join("")));
    let path = path.to_str().unwrap();
    let n = exits.to_string();
    let first = vmm(
        &["run", guest, "--snapshot", path, "--snapshot-after-exits", &n, "--snapshot-and-stop", "--timeout", TIMEOUT],
        "",
    );
    if first.status != 79 {
        assert!(first.stderr.contains("before --snapshot-after-exits"), "{guest} at {exits}: {}", first.stderr);
        return None;
    }
    assert!(first.stderr.contains(&format!("vmm: snapshot written to {path} after")), "{}", first.stderr);
    let restored = vmm(&[&["restore", path, "--timeout", TIMEOUT], restore_flags].concat(), input);
    Some((first, restored))
}

/// Exits of an uninterrupted run, from `--stats` (or the trace, for a run
/// that ends in a fatal exit and so prints no statistics).
fn total_exits(guest: &guests::Guest) -> u64 {
    let o = vmm(&["run", guest.name, "--stats", "--timeout", TIMEOUT], guest.input);
    if let Some(total) = o.stderr.lines().find(|l| l.starts_with("total")) {
        return total.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("the total exit count");
    }
    let o = vmm(&["run", guest.name, "--trace", "--timeout", TIMEOUT], guest.input);
    o.stderr.lines().filter(|l| l.starts_with('#')).count() as u64
}

#[test]
fn every_builtin_guest_restored_from_a_snapshot_continues_exactly_where_it_was() {
    if !kvm_available() {
        return;
    }
    for guest in guests::GUESTS {
        // echo waits for input forever: snapshot it while it polls, type the line into the restored one.
        let counts = if guest.name == "echo" {
            vec![1, 12, 40]
        } else {
            let total = total_exits(guest);
            vec![1, total / 3, 2 * total / 3, total.saturating_sub(2).max(1)]
        };
        let mut taken = 0;
        for &n in &counts {
            let Some((first, restored)) = snapshot_and_restore(guest.name, n, &[], guest.input) else { continue };
            taken += 1;
            let whole = format!("{}{}", first.stdout, restored.stdout);
            assert_eq!(whole, guest.expected_output, "{} snapshotted after {n} exits: {}", guest.name, restored.stderr);
            assert_eq!(restored.status, guest.expected_status, "{} after {n}: {}", guest.name, restored.stderr);
        }
        assert!(taken >= 2, "{}: only {taken} of the snapshots at {counts:?} were taken", guest.name);
    }
}

#[test]
fn a_restore_that_leaves_out_a_part_of_the_state_is_caught() {
    if !kvm_available() {
        return;
    }
    // (guest, exits, the part left out): each restore must then differ from the uninterrupted run.
    let cases = [
        ("ticks", 60, "pit"),
        ("ticks", 60, "irqchip"),
        ("hello64", 5, "regs"),
        ("modes", 30, "sregs"),
        ("hello", 10, "memory"),
        ("traps", 30, "devices"),
    ];
    for (guest, exits, part) in cases {
        let expected = guests::find(guest).unwrap();
        let (first, restored) = snapshot_and_restore_all(guest, exits);
        assert_eq!(
            (format!("{}{}", first.stdout, restored.stdout), restored.status),
            (expected.expected_output.to_string(), expected.expected_status),
            "{guest}: the positive control"
        );
        let (first, broken) =
            snapshot_and_restore(guest, exits, &["--omit", part, "--timeout", "2"], "").expect("the snapshot is taken");
        let whole = format!("{}{}", first.stdout, broken.stdout);
        assert!(
            whole != expected.expected_output || broken.status != expected.expected_status,
            "{guest} restored without its {part} state still matched the uninterrupted run"
        );
    }
}

fn snapshot_and_restore_all(guest: &str, exits: u64) -> (Outcome, Outcome) {
    snapshot_and_restore(guest, exits, &[], "").expect("the snapshot is taken")
}

fn take(guest: &str, exits: u64, name: &str) -> String {
    let path = snapshot_path(name);
    let p = path.to_str().unwrap().to_string();
    let o =
        vmm(&["run", guest, "--snapshot", &p, "--snapshot-after-exits", &exits.to_string(), "--snapshot-and-stop"], "");
    assert_eq!(o.status, 79, "{}", o.stderr);
    p
}

fn refused(args: &[&str], needle: &str) {
    let o = vmm(args, "");
    assert_eq!(o.status, 81, "{args:?}: {}", o.stderr);
    assert!(o.stderr.contains(needle), "{args:?}: wanted {needle:?} in {}", o.stderr);
}

#[test]
fn damaged_foreign_and_mismatched_snapshots_are_refused_with_the_reason() {
    if !kvm_available() {
        return;
    }
    let p = take("ticks", 40, "refusals");
    let mem = format!("{p}.mem");
    let bytes = std::fs::read(&p).unwrap();

    refused(&["restore", &p, "--mem", "256"], "the snapshot was made with --mem 128, this restore asks for --mem 256");
    let hello = take("hello64", 3, "refusals-no-timers");
    refused(&["restore", &hello, "--timers"], "made without --timers");

    let other = snapshot_path("other-version");
    let mut v = bytes.clone();
    v[8] = 7;
    std::fs::write(&other, &v).unwrap();
    std::fs::copy(&mem, format!("{}.mem", other.display())).unwrap();
    refused(&["restore", other.to_str().unwrap()], "snapshot format version 7, but this vmm reads version 1 only");

    let cut = snapshot_path("truncated");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    refused(&["restore", cut.to_str().unwrap()], "the file is truncated");

    let flipped = snapshot_path("flipped");
    let mut f = bytes.clone();
    let last = f.len() - 7;
    f[last] ^= 0x40;
    std::fs::write(&flipped, &f).unwrap();
    refused(&["restore", flipped.to_str().unwrap()], "the section is corrupt");

    // The memory file: cut short, one guest page changed, another snapshot's.
    let short = snapshot_path("short-mem");
    std::fs::write(&short, &bytes).unwrap();
    let m = std::fs::read(&mem).unwrap();
    std::fs::write(format!("{}.mem", short.display()), &m[..m.len() / 2]).unwrap();
    refused(&["restore", short.to_str().unwrap()], "the file is truncated");
    let corrupt = snapshot_path("corrupt-mem");
    std::fs::write(&corrupt, &bytes).unwrap();
    let mut c = m.clone();
    c[4096 + 0x10_0000] ^= 1; // the first byte of the guest's code
    std::fs::write(format!("{}.mem", corrupt.display()), &c).unwrap();
    refused(&["restore", corrupt.to_str().unwrap()], "is corrupt: pages");
    let foreign = snapshot_path("foreign-mem");
    std::fs::write(&foreign, &bytes).unwrap();
    std::fs::copy(format!("{hello}.mem"), format!("{}.mem", foreign.display())).unwrap();
    refused(&["restore", foreign.to_str().unwrap()], "is not the memory file of this snapshot");

    refused(&["restore", "/nonexistent/snapshot"], "cannot read /nonexistent/snapshot");
    refused(&["snapshot-info", corrupt.to_str().unwrap()], "is corrupt: pages");
}

#[test]
fn snapshot_info_tells_what_the_snapshot_holds_and_the_memory_file_is_sparse() {
    if !kvm_available() {
        return;
    }
    let p = take("ticks", 40, "info");
    let o = vmm(&["snapshot-info", &p], "");
    assert_eq!(o.status, 0, "{}", o.stderr);
    for needle in [
        "machine: 128 MiB RAM, 1 vCPU(s), with --timers",
        "vcpu 0: rip=",
        "LAPIC yes",
        "irqchip yes, PIT yes",
        "device uart at port 0x3f8+0x8",
        "checksums ok",
    ] {
        assert!(o.stdout.contains(needle), "{needle:?} not in {}", o.stdout);
    }
    let meta = std::fs::metadata(format!("{p}.mem")).unwrap();
    let allocated = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    assert_eq!(meta.len(), 4096 + (128 << 20));
    assert!(allocated < 1 << 20, "the memory file of a tiny guest holds {allocated} bytes on disk");
}

#[test]
fn sigusr1_writes_a_snapshot_now_and_the_run_goes_on_or_stops() {
    if !kvm_available() {
        return;
    }
    let guest = guests::find("exits").unwrap();
    for stop in [true, false] {
        let path = snapshot_path(&format!("sigusr1-{stop}"));
        let p = path.to_str().unwrap();
        let mut args = vec!["run", "exits", "--snapshot", p, "--timeout", TIMEOUT];
        if stop {
            args.push("--snapshot-and-stop");
        }
        let child =
            Command::new(binary("vmm")).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        send_sigusr1(child.id());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("vmm: snapshot written to"), "{stderr}");
        if stop {
            assert_eq!(out.status.code(), Some(79), "{stderr}");
            assert!(out.stdout.is_empty());
        } else {
            assert_eq!(out.status.code(), Some(0), "{stderr}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), guest.expected_output);
        }
        let restored = vmm(&["restore", p, "--timeout", TIMEOUT], "");
        assert_eq!((restored.status, restored.stdout.as_str()), (0, guest.expected_output), "{}", restored.stderr);
    }
}

/// `kill -USR1 pid`.
fn send_sigusr1(pid: u32) {
    let status = Command::new("kill").args(["-USR1", &pid.to_string()]).status().expect("kill runs");
    assert!(status.success());
}

#[test]
fn a_restored_guest_can_be_snapshotted_again() {
    if !kvm_available() {
        return;
    }
    let guest = guests::find("ticks").unwrap();
    let first = take("ticks", 30, "chain-1");
    let second = snapshot_path("chain-2");
    let second = second.to_str().unwrap();
    let path = Path::new(&first);
    let o1 = vmm(&["run", "ticks", "--snapshot", &first, "--snapshot-after-exits", "30", "--snapshot-and-stop"], "");
    let o2 = vmm(
        &[
            "restore",
            path.to_str().unwrap(),
            "--snapshot",
            second,
            "--snapshot-after-exits",
            "40",
            "--snapshot-and-stop",
        ],
        "",
    );
    assert_eq!(o2.status, 79, "{}", o2.stderr);
    let o3 = vmm(&["restore", second, "--timeout", TIMEOUT], "");
    assert_eq!(format!("{}{}{}", o1.stdout, o2.stdout, o3.stdout), guest.expected_output, "{}", o3.stderr);
    assert_eq!(o3.status, 0);
}
