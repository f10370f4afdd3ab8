//! Real gdb (apt `gdb`; CI installs it) in batch mode against guests under
//! `vmm run --gdb`: a breakpoint at a symbol, registers and memory read and
//! written, single steps (over port I/O too), continue to the end with the
//! guest's exit status, Ctrl-C on a spinning guest, and what this KVM
//! cannot do said in gdb and on stderr.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tests::{binary, kvm_available, peer_available, temp_file};

/// A port per test, so they can run in parallel.
const PORTS: [u16; 4] = [42311, 42312, 42313, 42314];

/// A vmm under test, its stderr read on a thread (gdb is told to connect
/// once the stub says it listens: a probing connection would be taken for gdb).
struct Vmm {
    child: Child,
    stderr: std::thread::JoinHandle<String>,
}

/// The real vmm on `image` with `--gdb 127.0.0.1:PORT` and `extra`.
fn vmm_gdb(image: &str, port: u16, extra: &[&str]) -> Vmm {
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(binary("vmm"))
        .args(["run", image, "--gdb", &addr, "--timeout", "120"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vmm");
    let (listening, told) = std::sync::mpsc::channel();
    let pipe = child.stderr.take().expect("piped stderr");
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if line.contains("vmm: gdb: listening on") {
                let _ = listening.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if told.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        panic!("vmm never listened on {addr}: {}", stderr.join().unwrap_or_default());
    }
    Vmm { child, stderr }
}

/// Runs gdb in batch mode on `script` (one command a line); returns its output.
fn gdb(port: u16, script: &str) -> String {
    let file = temp_file(&format!("script-{port}.gdb"), script.as_bytes());
    let out = Command::new("timeout")
        .args(["120", "gdb", "-nx", "-q", "-batch", "-x", file.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .expect("run gdb");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Waits for the vmm: (status, stdout, stderr).
fn finish(vmm: Vmm) -> (i32, String, String) {
    let out = vmm.child.wait_with_output().expect("wait for vmm");
    let stderr = vmm.stderr.join().expect("stderr reader");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

fn ready() -> bool {
    kvm_available() && peer_available("gdb", "gdb")
}

/// The addresses of kernel_main's first `n` instructions and how many of
/// them are `out` (its start is the straight-line serial set-up), by objdump.
fn first_instructions(kernel: &str, n: usize) -> (Vec<u64>, usize) {
    let out = Command::new("objdump").args(["-d", "--no-show-raw-insn", kernel]).output().expect("run objdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let body = text.split("<kernel_main>:").nth(1).expect("kernel_main in objdump's output");
    let lines: Vec<&str> = body.lines().filter(|l| l.contains(":\t")).take(n).collect();
    let addrs = lines.iter().map(|l| u64::from_str_radix(l.trim().split(':').next().unwrap(), 16).unwrap()).collect();
    let outs = lines.iter().filter(|l| l.contains("\tout ")).count();
    assert!(lines.iter().all(|l| !l.contains("\tj") && !l.contains("call")), "not straight-line: {lines:?}");
    (addrs, outs)
}

fn mbkernel() -> String {
    temp_file("mbkernel-gdb.elf", guests::find("mbkernel").unwrap().image).to_string_lossy().into_owned()
}

#[test]
fn gdb_breaks_at_a_symbol_reads_registers_and_memory_steps_and_continues_to_the_exit() {
    if !ready() {
        return;
    }
    let kernel = mbkernel();
    // Steps over several `out`s, each exiting to the VMM: no stop may be lost.
    const STEPS: usize = 20;
    let (addrs, outs) = first_instructions(&kernel, STEPS);
    assert!(outs >= 2, "kernel_main starts with the UART's set-up");
    let vmm = vmm_gdb(&kernel, PORTS[0], &["--gdb-wait"]);
    let out = gdb(
        PORTS[0],
        &format!(
            "set pagination off\nfile {kernel}\ntarget remote 127.0.0.1:{}\ninfo registers eip eax\n\
         break kernel_main\ncontinue\ninfo registers eip\np/x magic\np info->mem_lower\n\
         x/s info->boot_loader_name\nx/2wx $esp\nstepi\ninfo registers eip\n\
         stepi {}\ninfo registers eip\ncontinue\n",
            PORTS[0],
            STEPS - 2
        ),
    );
    let (status, stdout, stderr) = finish(vmm);
    let expect = [
        "eip            0x10000c            0x10000c <_start>", // held before the first instruction
        "eax            0x2badb002",
        "Breakpoint 1, kernel_main (magic=732803074, info=0x3000)",
        "eip            0x100100            0x100100 <kernel_main>",
        "$1 = 0x2badb002",
        "$2 = 639",
        "\"virtlab vmm\"",
        "0x00100018\t0x2badb002",  // the return address and magic on the stack
        "eip            0x100101", // one instruction further
        "[Inferior 1 (process 1) exited normally]",
    ];
    let landed = format!("eip            {:#x}", addrs[STEPS - 1]);
    assert!(out.contains(&landed), "{} steps over {outs} outs end at {landed:?}:\n{out}", STEPS - 1);
    for line in expect {
        assert!(out.contains(line), "gdb's output lacks {line:?}:\n{out}\nvmm stderr:\n{stderr}");
    }
    assert_eq!((status, stdout.as_str()), (0, guests::find("mbkernel").unwrap().expected_output), "{stderr}");
    assert!(stderr.contains("vmm: gdb: the guest exited with status 0; gdb was told"), "{stderr}");
}

#[test]
fn writing_guest_memory_from_gdb_changes_the_path_and_the_exit_status_reaches_gdb() {
    if !ready() {
        return;
    }
    let kernel = mbkernel();
    let vmm = vmm_gdb(&kernel, PORTS[1], &["--gdb-wait"]);
    let out = gdb(
        PORTS[1],
        &format!(
        "file {kernel}\ntarget remote 127.0.0.1:{}\nbreak kernel_main\ncontinue\nset var magic = 0x1234\ncontinue\n",
        PORTS[1]
    ),
    );
    let (status, stdout, stderr) = finish(vmm);
    assert!(out.contains("[Inferior 1 (process 1) exited with code 01]"), "{out}\n{stderr}");
    assert_eq!(status, 1, "{stderr}");
    assert!(stdout.contains("magic: 0x00001234 wrong"), "{stdout}");
}

#[test]
fn ctrl_c_stops_a_spinning_long_mode_guest_and_gdb_sees_64_bit_registers() {
    if !ready() {
        return;
    }
    // nop; nop; jmp $ in long mode, not held: gdb connecting stops it.
    let spin = temp_file("spin64-gdb.bin", &[0x90, 0x90, 0xeb, 0xfe]);
    let vmm = vmm_gdb(spin.to_str().unwrap(), PORTS[2], &["--mode", "long"]);
    let script = format!(
        "set pagination off\ntarget remote 127.0.0.1:{}\ninfo registers rip\ncontinue\ninfo registers rip\nmonitor caps\nkill\n",
        PORTS[2]
    );
    let file = temp_file("ctrl-c.gdb", script.as_bytes());
    let mut gdb = Command::new("gdb")
        .args(["-nx", "-q", "-batch", "-x", file.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gdb");
    // Ctrl-C reaches gdb as SIGINT once it runs `continue`.
    std::thread::sleep(Duration::from_secs(3));
    let sent = Command::new("kill").args(["-INT", &gdb.id().to_string()]).status().expect("kill -INT");
    assert!(sent.success());
    let started = Instant::now();
    while gdb.try_wait().ok().flatten().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = gdb.kill();
            panic!("gdb did not finish after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut out = String::new();
    gdb.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    gdb.stderr.take().unwrap().read_to_string(&mut out).unwrap();
    let (status, _, stderr) = finish(vmm);
    assert!(out.contains("Program received signal SIGINT"), "{out}\n{stderr}");
    assert_eq!(out.matches("rip            0x100002").count(), 2, "both stops at the jmp: {out}");
    assert!(out.contains("this KVM (probed): single-step"), "monitor caps: {out}");
    assert_eq!(status, 91, "gdb killed the guest: {stderr}");
}

#[test]
fn breakpoints_past_what_this_kvm_can_do_are_refused_and_said_so() {
    if !ready() {
        return;
    }
    let kernel = mbkernel();
    let vmm = vmm_gdb(&kernel, PORTS[3], &["--gdb-wait"]);
    // Five breakpoints: four debug registers, then int3 where KVM can run it.
    let breaks: String = ["kernel_main", "*0x100101", "*0x100102", "*0x100103", "*0x100104"]
        .iter()
        .map(|b| format!("break {b}\n"))
        .collect();
    let out = gdb(PORTS[3], &format!("file {kernel}\ntarget remote 127.0.0.1:{}\n{breaks}continue\nkill\n", PORTS[3]));
    let (_, _, stderr) = finish(vmm);
    let caps = stderr.lines().find(|l| l.contains("this KVM (probed)")).unwrap_or_else(|| panic!("{stderr}"));
    if caps.contains("int3 breakpoints no") {
        assert!(out.contains("Cannot insert breakpoint 5"), "{out}");
        assert!(caps.contains("at most 4 breakpoints"), "{caps}");
    } else {
        assert!(out.contains("Breakpoint 1, kernel_main"), "{out}");
    }
}
