//! Kernels as people write them boot as QEMU's `-kernel` boots them: a PVH
//! ELF linked with plain `ld`, the C Multiboot kernel with a command line
//! and a module, the repository's PVH guests. Where QEMU is installed (CI
//! installs it), each runs under QEMU too (`-M pc` for Multiboot, `-M
//! microvm` for PVH) and the serial output must be the same byte for byte.

use std::process::{Command, Stdio};

use tests::{kvm_available, peer_available, temp_file, vmm};

/// Bound on every run.
const TIMEOUT: &str = "30";

/// The serial output of QEMU booting `kernel` on `machine` with `extra`
/// arguments (`-append`, `-initrd`): stdout, SeaBIOS's console turned off.
fn qemu(machine: &str, kernel: &str, extra: &[&str]) -> (String, i32) {
    let out = Command::new("timeout")
        .args(["60", "qemu-system-x86_64", "-M", machine, "-accel", "kvm", "-m", "128", "-nodefaults", "-nographic"])
        .args(["-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4"])
        .args(["-fw_cfg", "name=etc/sercon-port,string=0", "-kernel", kernel])
        .args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run qemu-system-x86_64");
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code().unwrap_or(-1))
}

#[test]
fn a_pvh_elf_linked_with_plain_ld_boots_and_its_skipped_segment_is_noted() {
    if !kvm_available() {
        return;
    }
    let elf = temp_file("hello-plain-ld.elf", guests::HELLO_PLAIN_LD_ELF);
    let elf = elf.to_str().unwrap();
    let o = vmm(&["run", elf, "--timeout", TIMEOUT]);
    assert_eq!((o.status, o.stdout.as_str()), (0, guests::find("hello").unwrap().expected_output), "{}", o.stderr);
    // The note's segment lands just past 0x8048000 (ld's default base for i386).
    let note = o.stderr.strip_suffix(": skipped: wholly outside guest RAM, as QEMU skips it\n").unwrap_or("");
    assert!(note.starts_with("vmm: boot: ELF segment 2 at 0x8048"), "{}", o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "one line on stderr, nothing else: {}", o.stderr);
    let traced = vmm(&["run", elf, "--trace", "--timeout", TIMEOUT]);
    assert!(traced.stderr.contains("ELF segment 1 at 0x100000+"), "{}", traced.stderr);
    assert!(traced.stderr.contains(o.stderr.trim_end()), "--trace lists it too: {}", traced.stderr);
    // With RAM enough to hold it, the segment is loaded like the others.
    let big = vmm(&["run", elf, "--mem", "256", "--timeout", TIMEOUT]);
    assert_eq!((big.status, big.stderr.as_str()), (0, ""), "{}", big.stderr);
}

#[test]
fn the_c_multiboot_kernel_reads_its_command_line_and_module() {
    if !kvm_available() {
        return;
    }
    let kernel = temp_file("mbkernel.elf", guests::find("mbkernel").unwrap().image);
    let module = temp_file("module.txt", b"first line of module zero\nsecond line\n");
    let args = ["run", kernel.to_str().unwrap(), "--cmdline", "answer=42 quiet", "--initrd", module.to_str().unwrap()];
    let o = vmm(&[&args[..], &["--timeout", TIMEOUT]].concat());
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(o.stdout.contains("magic: 0x2badb002 ok\n"), "{}", o.stdout);
    assert!(o.stdout.contains("arguments: \"answer=42 quiet\"\n"), "{}", o.stdout);
    let module_line = "module 0: 38 bytes, page-aligned: yes, first line: \"first line of module zero\"\n";
    assert!(o.stdout.contains(module_line), "{}", o.stdout);
}

#[test]
fn the_c_multiboot_kernel_prints_the_same_under_vmm_and_qemu_pc() {
    if !kvm_available() || !peer_available("qemu-system-x86_64", "qemu-system-x86") {
        return;
    }
    let kernel = temp_file("mbkernel-qemu.elf", guests::find("mbkernel").unwrap().image);
    let module = temp_file("module-qemu.txt", b"NR_CPUS=1\nMEMSIZE=128\n");
    let (kernel, module) = (kernel.to_str().unwrap(), module.to_str().unwrap());
    let o = vmm(&["run", kernel, "--cmdline", "x=1 y=2", "--initrd", module, "--timeout", TIMEOUT]);
    let (qemu_out, qemu_status) = qemu("pc", kernel, &["-append", "x=1 y=2", "-initrd", module]);
    assert_eq!(o.stdout, qemu_out, "vmm (left) and QEMU -M pc (right) differ; vmm stderr: {}", o.stderr);
    // QEMU's isa-debug-exit reports status s as 2s + 1.
    assert_eq!((o.status, qemu_status), (0, 1));
    assert!(o.stdout.ends_with("goodbye\n"), "{}", o.stdout);
}

#[test]
fn the_pvh_guests_print_the_same_under_vmm_and_qemu_microvm() {
    if !kvm_available() || !peer_available("qemu-system-x86_64", "qemu-system-x86") {
        return;
    }
    let cases: [(&str, &[u8], &str); 3] = [
        ("hello", guests::find("hello").unwrap().image, ""),
        ("hello-plain-ld", guests::HELLO_PLAIN_LD_ELF, ""),
        ("workset", guests::find("workset").unwrap().image, "mib=2 passes=3"),
    ];
    for (name, image, cmdline) in cases {
        let path = temp_file(&format!("{name}-microvm.elf"), image);
        let path = path.to_str().unwrap();
        let o = vmm(&["run", path, "--cmdline", cmdline, "--timeout", TIMEOUT]);
        let (qemu_out, qemu_status) = qemu("microvm", path, &["-append", cmdline]);
        assert_eq!(o.stdout, qemu_out, "{name}: vmm (left) and QEMU microvm (right) differ; vmm stderr: {}", o.stderr);
        assert_eq!((o.status, qemu_status), (0, 1), "{name}");
        assert!(!o.stdout.is_empty(), "{name} printed nothing");
    }
}

#[test]
fn the_i8042_reset_line_ends_the_run_with_status_90() {
    if !kvm_available() {
        return;
    }
    // mov al, 0xfe; out 0x64, al; hlt: what Linux's reboot=k does.
    let image = temp_file("i8042-reset.bin", &[0xb0, 0xfe, 0xe6, 0x64, 0xf4]);
    let o = vmm(&["run", image.to_str().unwrap(), "--timers", "--timeout", TIMEOUT]);
    assert_eq!(o.status, 90, "{}", o.stderr);
    // Without the PC devices the port is unclaimed and the guest halts for good.
    let o = vmm(&["run", image.to_str().unwrap(), "--timeout", "2"]);
    assert_eq!(o.status, 77, "{}", o.stderr);
}
