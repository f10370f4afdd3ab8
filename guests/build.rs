//! Assembles and links every guest in `asm/` with GNU `as` and `ld`.
//!
//! Flat binaries are linked at the address the VMM loads them to; the PVH
//! guests become ELF32 files with a `XEN_ELFNOTE_PHYS32_ENTRY` note. `hello64`
//! is also linked as a plain ELF64, to exercise the VMM's ELF64 loader.

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
    ("triple", "triple.bin", Link::Flat64),
    ("echo", "echo.bin", Link::Flat64),
    ("hello", "hello.elf", Link::Pvh),
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
    }
}

fn run(cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}; install GNU binutils (apt-get install binutils)"));
    assert!(status.success(), "{shown} failed with {status}");
}

fn main() {
    let asm = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("asm");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=asm");
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
