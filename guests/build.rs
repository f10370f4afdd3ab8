//! Assembles and links every guest in `asm/` with GNU `as` and `ld`.
//!
//! Flat binaries are linked at the address the VMM loads them to; the PVH
//! guests become ELF32 files with a `XEN_ELFNOTE_PHYS32_ENTRY` note. `hello64`
//! is also linked as a plain ELF64, to exercise the VMM's ELF64 loader.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How a guest is assembled and linked: (`as` flags, `ld` flags, output file).
struct Build {
    source: &'static str,
    output: &'static str,
    as_flags: &'static [&'static str],
    ld_flags: &'static [&'static str],
}

const REAL_MODE_BASE: &str = "0x7c00";
const KERNEL_BASE: &str = "0x100000";

const BUILDS: &[Build] = &[
    Build {
        source: "hello16",
        output: "hello16.bin",
        as_flags: &["--32"],
        ld_flags: &["-m", "elf_i386", "-Ttext", REAL_MODE_BASE, "--oformat", "binary"],
    },
    Build {
        source: "modes",
        output: "modes.bin",
        as_flags: &["--32"],
        ld_flags: &["-m", "elf_i386", "-Ttext", REAL_MODE_BASE, "--oformat", "binary"],
    },
    Build {
        source: "hello32",
        output: "hello32.bin",
        as_flags: &["--32"],
        ld_flags: &["-m", "elf_i386", "-Ttext", KERNEL_BASE, "--oformat", "binary"],
    },
    Build {
        source: "hello64",
        output: "hello64.bin",
        as_flags: &["--64"],
        ld_flags: &["-m", "elf_x86_64", "-Ttext", KERNEL_BASE, "--oformat", "binary"],
    },
    Build {
        source: "hello64",
        output: "hello64.elf",
        as_flags: &["--64"],
        ld_flags: &["-m", "elf_x86_64", "-Ttext", KERNEL_BASE, "-e", "_start"],
    },
    Build {
        source: "traps",
        output: "traps.bin",
        as_flags: &["--64"],
        ld_flags: &["-m", "elf_x86_64", "-Ttext", KERNEL_BASE, "--oformat", "binary"],
    },
    Build {
        source: "ticks",
        output: "ticks.bin",
        as_flags: &["--64"],
        ld_flags: &["-m", "elf_x86_64", "-Ttext", KERNEL_BASE, "--oformat", "binary"],
    },
    Build {
        source: "triple",
        output: "triple.bin",
        as_flags: &["--64"],
        ld_flags: &["-m", "elf_x86_64", "-Ttext", KERNEL_BASE, "--oformat", "binary"],
    },
    Build { source: "hello", output: "hello.elf", as_flags: &["--32"], ld_flags: &["-m", "elf_i386", "-T", "pvh.ld"] },
    Build { source: "exits", output: "exits.elf", as_flags: &["--32"], ld_flags: &["-m", "elf_i386", "-T", "pvh.ld"] },
];

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
    for b in BUILDS {
        let object = out.join(format!("{}.{}.o", b.output, b.source));
        run(Command::new("as")
            .args(b.as_flags)
            .arg("-I")
            .arg(&asm)
            .arg("-o")
            .arg(&object)
            .arg(asm.join(format!("{}.S", b.source))));
        run(Command::new("ld")
            .current_dir(&asm)
            .args(b.ld_flags)
            .args(["--no-warn-rwx-segments", "-z", "noexecstack", "-o"])
            .arg(out.join(b.output))
            .arg(&object));
        assert_non_empty(&out.join(b.output));
    }
}

fn assert_non_empty(path: &Path) {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    assert!(len > 0, "{} is empty after linking", path.display());
}
