//! The vCPU thread's seccomp filter in the real `vmm` binary: it is on by
//! default and off with `--no-seccomp`, and every built-in guest, the
//! trace, the statistics, the watchdog's kick, serial input and the UART's
//! interrupt line all work under it. (A forbidden call dying of SIGSYS
//! with its report is shown by the unit tests of `vmm::seccomp`.)

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tests::{binary, kvm_available, process, temp_file, Outcome};

/// Bound on every run, so a broken guest fails the test instead of hanging it.
const TIMEOUT: &str = "30";

/// Runs the real `vmm` with `input` on its stdin; fails if a signal killed it.
fn vmm(args: &[&str], input: &str) -> Outcome {
    let o = process("vmm", args, input.as_bytes());
    assert!(!o.stderr.contains("seccomp"), "vmm {args:?}: {}", o.stderr);
    o
}

fn spawn(args: &[&str]) -> Child {
    Command::new(binary("vmm"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vmm")
}

#[test]
fn every_builtin_guest_runs_under_the_filter_with_and_without_trace_and_stats() {
    if !kvm_available() {
        return;
    }
    for guest in guests::GUESTS {
        let o = vmm(&["run", guest.name, "--timeout", TIMEOUT], guest.input);
        assert_eq!(
            (o.status, o.stdout.as_str()),
            (guest.expected_status, guest.expected_output),
            "{}: {}",
            guest.name,
            o.stderr
        );
        // The exits guest's 100000 exits take seconds to trace on this KVM: statistics only.
        let flags: &[&str] = if guest.name == "exits" { &["--stats"] } else { &["--stats", "--trace"] };
        let o = vmm(&[&["run", guest.name, "--timeout", TIMEOUT], flags].concat(), guest.input);
        assert_eq!(
            (o.status, o.stdout.as_str()),
            (guest.expected_status, guest.expected_output),
            "{}: {}",
            guest.name,
            o.stderr
        );
        // A fatal exit ends the run with its diagnosis instead of the statistics.
        if guest.expected_status == 0 {
            assert!(o.stderr.lines().any(|l| l.starts_with("total")), "{}: no statistics in {}", guest.name, o.stderr);
        }
        if flags.contains(&"--trace") {
            assert!(o.stderr.lines().any(|l| l.starts_with("#1 ")), "{}: no trace in {}", guest.name, o.stderr);
        }
    }
}

#[test]
fn the_kick_the_diagnosis_serial_input_and_the_uart_interrupt_work_under_the_filter() {
    if !kvm_available() {
        return;
    }
    // The watchdog's signal interrupts KVM_RUN; its handler returns through rt_sigreturn.
    let spin = temp_file("sandbox-spin.bin", &[0xeb, 0xfe]); // jmp $
    let o = vmm(&["run", spin.to_str().unwrap(), "--timeout", "0.3"], "");
    assert_eq!(o.status, 76, "{}", o.stderr);
    assert!(o.stderr.contains("at rip=0x7c00 (16-bit real mode): jmp short 7C00h [eb fe]"), "{}", o.stderr);
    // A fatal exit reads the registers for its diagnosis.
    let o = vmm(&["run", "triple", "--timeout", TIMEOUT], "");
    assert_eq!(o.status, 73, "{}", o.stderr);
    assert!(o.stderr.contains("(64-bit long mode): ud2 [0f 0b]"), "{}", o.stderr);
    // Serial input arrives from the reader thread over a channel.
    let o = vmm(&["run", "echo", "--timeout", TIMEOUT], "under seccomp\n");
    assert_eq!(o.stdout, "serial echo: type a line\nUNDER SECCOMP\n", "{}", o.stderr);
    // With THR-empty interrupts on and --timers, a transmitted byte raises
    // IRQ 4 through KVM_IRQ_LINE on the VM descriptor:
    // mov dx, 0x3f9; mov al, 2; out dx, al; mov dx, 0x3f8; mov al, 'x'; out dx, al; mov al, 0; out 0xf4, al
    let irq = temp_file(
        "sandbox-irq.bin",
        &[0xba, 0xf9, 0x03, 0xb0, 0x02, 0xee, 0xba, 0xf8, 0x03, 0xb0, b'x', 0xee, 0xb0, 0x00, 0xe6, 0xf4],
    );
    let o = vmm(&["run", irq.to_str().unwrap(), "--timers", "--timeout", TIMEOUT], "");
    assert_eq!((o.status, o.stdout.as_str()), (0, "x"), "{}", o.stderr);
}

/// The `Seccomp:` mode of thread `tid` of process `pid` (0 off, 2 filter).
fn seccomp_mode(pid: u32, tid: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Seccomp:")).and_then(|v| v.trim().parse().ok())
}

/// The ids of the threads of `pid` named `name`.
fn threads_named(pid: u32, name: &str) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(|t| t.ok()?.file_name().into_string().ok())
        .filter(|tid| std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).is_ok_and(|c| c.trim() == name))
        .collect()
}

#[test]
fn the_vcpu_thread_runs_under_a_seccomp_filter_unless_no_seccomp_is_given() {
    if !kvm_available() {
        return;
    }
    let spin = temp_file("sandbox-spin-proc.bin", &[0xeb, 0xfe]); // jmp $
    let spin = spin.to_str().unwrap();

    let mut child = spawn(&["run", spin, "--timeout", "20"]);
    let pid = child.id();
    let started = Instant::now();
    let mode_of = |name: &str| threads_named(pid, name).pop().and_then(|tid| seccomp_mode(pid, &tid));
    // (the thread exists, named, a moment before it installs its filter)
    while mode_of("vcpu0") != Some(2) && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (vcpu, watchdog, main) = (mode_of("vcpu0"), mode_of("watchdog"), seccomp_mode(pid, &pid.to_string()));
    child.kill().expect("stop the spinning guest");
    let _ = child.wait();
    assert_eq!(vcpu, Some(2), "the vCPU thread is under a seccomp filter");
    // Started before the filter, they are not under it.
    assert_eq!(watchdog, Some(0), "the watchdog thread");
    assert_eq!(main, Some(0), "the main thread");

    let mut child = spawn(&["run", spin, "--timeout", "20", "--no-seccomp"]);
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(500)); // the guest is spinning by now
    let modes: Vec<Option<u32>> = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(Vec::new(), |tasks| {
        tasks.filter_map(|t| t.ok()?.file_name().into_string().ok()).map(|tid| seccomp_mode(pid, &tid)).collect()
    });
    let vcpu_threads = threads_named(pid, "vcpu0");
    child.kill().expect("stop the spinning guest");
    let _ = child.wait();
    assert!(!modes.is_empty() && modes.iter().all(|&m| m == Some(0)), "seccomp modes with --no-seccomp: {modes:?}");
    assert!(vcpu_threads.is_empty(), "--no-seccomp runs the vCPU on the main thread");
}
