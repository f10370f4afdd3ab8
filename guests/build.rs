//! Assembles and links every guest in `asm/` with GNU `as` and `ld`, and
//! compiles the C guests in `c/` with `gcc -m32 -ffreestanding`.
//!
//! Flat binaries are linked at the address the VMM loads them to; the PVH
//! guests become ELF32 files with a `XEN_ELFNOTE_PHYS32_ENTRY` note. `hello64`
//! is also linked as a plain ELF64, to exercise the VMM's ELF64 loader. The
//! C Multiboot kernel is built as the "bare bones" tutorials build theirs.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How a guest is linked.
#[derive(Clone, Copy)]
enum Link {
    /// Flat binary for real mode, at the boot-sector address.
    Real,
    /// Flat binary of 32-bit code at 1 MiB.
    Flat32,
    /// Flat binary of 64-bit code at 1 MiB.
    Flat64,
    /// ELF64 at 1 MiB, entered at `_start`.
    Elf64,
    /// ELF32 with the PVH note, by `pvh.ld`.
    Pvh,
    /// ELF32 with the PVH note, linked as a new user would, with
    /// `ld -m elf_i386 -Ttext=0x100000` and no script: the note gets a
    /// PT_LOAD of its own at 0x80480b4, outside a 128 MiB guest's RAM.
    PvhPlainLd,
}

/// (source in asm/, output file, how it is linked)
const BUILDS: &[(&str, &str, Link)] = &[
    ("hello16", "hello16.bin", Link::Real),
    ("modes", "modes.bin", Link::Real),
    ("hello32", "hello32.bin", Link::Flat32),
    ("hello64", "hello64.bin", Link::Flat64),
    ("hello64", "hello64.elf", Link::Elf64),
    ("traps", "traps.bin", Link::Flat64),
    ("ticks", "ticks.bin", Link::Flat64),
    ("smp", "smp.bin", Link::Flat64),
    ("uartirq", "uartirq.bin", Link::Flat64),
    ("triple", "triple.bin", Link::Flat64),
    ("echo", "echo.bin", Link::Flat64),
    ("hello", "hello.elf", Link::Pvh),
    ("hello", "hello-plain-ld.elf", Link::PvhPlainLd),
    ("exits", "exits.elf", Link::Pvh),
    ("workset", "workset.elf", Link::Pvh),
    ("count", "count.elf", Link::Pvh),
    ("ib700", "ib700.elf", Link::Pvh),
];

const REAL_MODE_BASE: &str = "0x7c00";
const KERNEL_BASE: &str = "0x100000";

/// `as` and `ld` flags for a kind of link.
fn flags(link: Link) -> (&'static str, Vec<&'static str>) {
    let flat = |machine, base| vec!["-m", machine, "-Ttext", base, "--oformat", "binary"];
    match link {
        Link::Real => ("--32", flat("elf_i386", REAL_MODE_BASE)),
        Link::Flat32 => ("--32", flat("elf_i386", KERNEL_BASE)),
        Link::Flat64 => ("--64", flat("elf_x86_64", KERNEL_BASE)),
        Link::Elf64 => ("--64", vec!["-m", "elf_x86_64", "-Ttext", KERNEL_BASE, "-e", "_start"]),
        Link::Pvh => ("--32", vec!["-m", "elf_i386", "-T", "pvh.ld"]),
        Link::PvhPlainLd => ("--32", vec!["-m", "elf_i386", "-Ttext=0x100000"]),
    }
}

fn run(cmd: &mut Command) {
    run_needing(cmd, "GNU binutils (apt-get install binutils)");
}

fn run_needing(cmd: &mut Command, package: &str) {
    let shown = format!("{cmd:?}");
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run {shown}: {e}; install {package}"));
    assert!(status.success(), "{shown} failed with {status} (it needs {package})");
}

/// Flags of a freestanding 32-bit kernel in C: no libc, no SSE (the
/// kernel never enables it), no position independence, no stack protector.
const C_FLAGS: &[&str] = &[
    "-m32",
    "-march=i686",
    "-ffreestanding",
    "-fno-pic",
    "-fno-pie",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-mgeneral-regs-only",
    "-O2",
    "-g",
    "-Wall",
    "-Wextra",
    "-Werror",
];

/// Builds the C Multiboot kernel `name` from `c/NAME.c`, `c/NAME_start.S`, `c/NAME.ld`.
fn build_c_kernel(c: &Path, out: &Path, name: &str) {
    let gcc = "gcc with 32-bit support (apt-get install gcc gcc-multilib)";
    let object = out.join(format!("{name}.o"));
    let start = out.join(format!("{name}_start.o"));
    run_needing(
        Command::new("gcc").args(C_FLAGS).arg("-c").arg(c.join(format!("{name}.c"))).arg("-o").arg(&object),
        gcc,
    );
    run(Command::new("as").arg("--32").arg("-o").arg(&start).arg(c.join(format!("{name}_start.S"))));
    run(Command::new("ld")
        .args(["-m", "elf_i386", "-T"])
        .arg(c.join(format!("{name}.ld")))
        .args(["--no-warn-rwx-segments", "-z", "noexecstack", "-o"])
        .arg(out.join(format!("{name}.elf")))
        .arg(&start)
        .arg(&object));
    assert_non_empty(&out.join(format!("{name}.elf")));
}

fn main() {
    let asm = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("asm");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=asm");
    println!("cargo:rerun-if-changed=c");
    let c = asm.with_file_name("c");
    build_c_kernel(&c, &out, "mbkernel");
    for &(source, output, link) in BUILDS {
        let (as_flag, ld_flags) = flags(link);
        let object = out.join(format!("{output}.{source}.o"));
        run(Command::new("as")
            .arg(as_flag)
            .arg("-I")
            .arg(&asm)
            .arg("-o")
            .arg(&object)
            .arg(asm.join(format!("{source}.S"))));
        run(Command::new("ld")
            .current_dir(&asm)
            .args(ld_flags)
            .args(["--no-warn-rwx-segments", "-z", "noexecstack", "-o"])
            .arg(out.join(output))
            .arg(&object));
        assert_non_empty(&out.join(output));
    }
}

fn assert_non_empty(path: &Path) {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    assert!(len > 0, "{} is empty after linking", path.display());
}
