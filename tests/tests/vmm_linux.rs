//! Debian's kernel under the VMM, as far as this machine's KVM takes it.
//!
//! Kernel-mode code runs in KVM's instruction emulator here (a nested,
//! software-assisted KVM: about 0.7 µs per instruction), so a full boot
//! cannot be tested: the tests check that the kernel reaches its first
//! early-console lines with our command line and our e820 map within a
//! bound, then stop it. The kernel is `VIRTLAB_LINUX_KERNEL` (a bzImage;
//! `.ci/run` fetches Debian's `linux-image-amd64` and sets it) or the
//! newest `/boot/vmlinuz-*`; where there is none the tests are skipped with
//! a line saying so, except in CI (`CI` set), where they fail.
//!
//! - The vmlinux inside the bzImage (decompressed here with `xz`, `zstd`
//!   or `gzip`) boots through its PVH note and prints its first printk
//!   lines: its version, our command line, our e820 map, and where it found
//!   our initrd (`--initrd`, PVH module 0).
//! - The bzImage itself boots through the 64-bit boot protocol: its
//!   decompressor prints its first line (it reads the command line from
//!   our zero page); decompressing 8 MB in the emulator takes too long to
//!   wait for the kernel after it (`docs/linux.md`).

#![allow(clippy::print_stderr)] // the tests say how long the kernel took, and why they skip

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tests::{binary, kvm_available, temp_path};

/// How long the kernel may take to print what the tests wait for.
const BOUND: Duration = Duration::from_secs(240);

fn kernel() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("VIRTLAB_LINUX_KERNEL") {
        // A relative path is the workspace root's (cargo runs a test in its crate's directory).
        return Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path));
    }
    let mut found: Vec<PathBuf> =
        std::fs::read_dir("/boot").map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default();
    found.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")));
    found.sort();
    if found.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Linux kernel: CI must set VIRTLAB_LINUX_KERNEL (see .ci/run) or install linux-image-amd64"
        );
        eprintln!(
            "skipped: no Linux kernel (set VIRTLAB_LINUX_KERNEL to a bzImage, or apt-get install linux-image-amd64)"
        );
    }
    found.pop()
}

/// The vmlinux inside a bzImage: its payload (setup header fields
/// `payload_offset` and `payload_length`), decompressed by the tool its
/// magic names.
fn extract_vmlinux(bzimage: &[u8]) -> PathBuf {
    let le32 = |at: usize| u32::from_le_bytes(bzimage[at..at + 4].try_into().unwrap()) as usize;
    let setup = (usize::from(bzimage[0x1f1]).max(4) + 1) * 512;
    let (offset, length) = (le32(0x248), le32(0x24c));
    let payload = &bzimage[setup + offset..setup + offset + length];
    let tool = match payload {
        [0xfd, b'7', b'z', b'X', b'Z', ..] => "xz",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        [0x1f, 0x8b, ..] => "gzip",
        other => panic!("the bzImage's payload starts with {:02x?}: not xz, zstd or gzip", &other[..4]),
    };
    let compressed = temp_path("vmlinux.payload");
    std::fs::write(&compressed, payload).unwrap();
    let out = Command::new(tool).arg("-dc").arg(&compressed).output().unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let vmlinux = temp_path("vmlinux");
    std::fs::write(&vmlinux, &out.stdout).unwrap();
    assert!(out.stdout.starts_with(b"\x7fELF"), "{tool} -dc gave no ELF");
    vmlinux
}

/// Runs the real `vmm` on `kernel` until its serial output has shown every
/// line of `wanted` (each a substring of a line), or it ends, or [`BOUND`]
/// passes; then kills it. Returns the lines seen and how long the last
/// wanted one took, or panics with what was seen.
fn boot_until(kernel: &str, cmdline: &str, extra: &[&str], wanted: &[&str]) -> (Vec<String>, Duration) {
    let mut child = Command::new(binary("vmm"))
        .args(["run", kernel, "--mem", "512", "--cmdline", cmdline, "--cpuid-mask", "cx16,xsave"])
        .args(["--timeout", &(BOUND.as_secs() + 30).to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vmm");
    let started = Instant::now();
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let mut missing: Vec<&str> = wanted.to_vec();
    while !missing.is_empty() {
        let left = BOUND.saturating_sub(started.elapsed());
        match lines.recv_timeout(left) {
            Ok(line) => {
                missing.retain(|w| !line.contains(w));
                seen.push(line);
            }
            Err(_) => break,
        }
    }
    let took = started.elapsed();
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait for vmm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        missing.is_empty(),
        "after {took:?}, never saw {missing:?}; serial output:\n{}\nstderr:\n{stderr}",
        seen.join("\n")
    );
    eprintln!("{kernel}: the last line waited for came after {:.1} s", took.as_secs_f64());
    (seen, took)
}

#[test]
fn the_vmlinux_inside_debians_kernel_prints_its_first_printk_lines_through_pvh() {
    if !kvm_available() {
        return;
    }
    let Some(bzimage) = kernel() else { return };
    let vmlinux = extract_vmlinux(&std::fs::read(&bzimage).expect("read the kernel"));
    let cmdline = "earlyprintk=ttyS0 reboot=k panic=-1";
    let wanted = [
        "Linux version ",
        "Command line: earlyprintk=ttyS0 reboot=k panic=-1",
        // our e820 map, as Linux prints it (it merges the EBDA and BIOS ranges with the hole between)
        "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
        "BIOS-e820: [mem 0x0000000000100000-0x000000001fffffff] usable",
        // the initrd, PVH module 0, as high in the 512 MiB as it fits
        "RAMDISK: [mem 0x1fff0000-0x1fffffff]",
    ];
    let initrd = tests::temp_file("initrd-64k.bin", &[0x5a; 0x1_0000]);
    let extra = ["--initrd", initrd.to_str().unwrap()];
    let (seen, _) = boot_until(vmlinux.to_str().unwrap(), cmdline, &extra, &wanted);
    let e820: Vec<&String> = seen.iter().filter(|l| l.contains("BIOS-e820:")).collect();
    assert_eq!(e820.len(), 3, "{e820:?}");
}

#[test]
fn debians_bzimage_boots_through_the_64_bit_protocol_and_its_decompressor_reads_our_command_line() {
    if !kvm_available() {
        return;
    }
    let Some(bzimage) = kernel() else { return };
    let wanted = ["KASLR disabled: 'nokaslr' on cmdline."];
    boot_until(bzimage.to_str().unwrap(), "earlyprintk=ttyS0 nokaslr", &[], &wanted);
}
