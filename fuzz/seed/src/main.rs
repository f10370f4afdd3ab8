//! `virtlab-fuzz-seed [DIR]`: writes `DIR/<target>/<name>` (default DIR
//! `fuzz/seeds`, next to this crate) for the targets whose input is a file
//! the repository has examples of:
//!
//! - `pvm_image`: the `.pbc` image of every built-in program (Brainfuck
//!   ones compiled with and without optimisation);
//! - `pvm_asm`: every `.pasm` program and the disassembly of every image;
//! - `pvm_bf`: every Brainfuck program with empty stdin, and with a line;
//! - `vmm_loader`: every ELF guest as a file to load (selector 0), every
//!   base image of the ELF mutator unedited (selector 2), every flat guest
//!   as the bytes of a flat case (selector 1); 4 MiB of RAM.
//!
//! - `pvm_differential`: inputs of pseudo-random bytes (any bytes are a
//!   program and a layout to the generator; seeds of 1 KiB let libFuzzer
//!   start with inputs long enough for whole programs);
//! - `wasm_frontend`: every WASI program of `wasm-programs` as raw module
//!   bytes (mode byte 0), and inputs of pseudo-random bytes for wasm-smith
//!   (mode byte 1);
//! - `vmm_snapshot`: the state files of snapshots of built-in guests, where
//!   /dev/kvm can make them (else none);
//! - `vmm_wire`: one frame of each kind of the migration protocol, the
//!   state frames carrying those snapshots;
//! - `vmm_ft`: one frame of each kind of the supervision channel, and
//!   `--inject-fault` specs.
//!
//! Seeds over 64 KiB (the largest programs' images and disassemblies)
//! are left out. The op-sequence targets (`vmm_serial`, `vmm_bus`, `vmm_exit`) start
//! from an empty corpus: their input is decoded by `arbitrary`.

use std::path::{Path, PathBuf};

/// The largest seed written, in bytes.
const MAX_SEED: usize = 64 << 10;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join(name), bytes)
}

/// libFuzzer dictionary of `.pasm` tokens: every mnemonic and directive,
/// the registers, punctuation, and numbers at the edges of what the
/// assembler accepts (i32, u32, i64, u64, i128).
fn asm_dictionary() -> String {
    let mut tokens: Vec<String> = pvm::isa::Opcode::ALL.iter().map(|op| format!("{} ", op.info().mnemonic)).collect();
    let directives = [
        ".text", ".data", ".entry", ".byte", ".half", ".word", ".quad", ".double", ".ascii", ".asciz", ".zero",
        ".align", ".org", "lif ",
    ];
    tokens.extend(directives.iter().map(|d| format!("{d} ")));
    tokens.extend((0..16).map(|r| format!("r{r}")));
    tokens.extend(
        ["sp", "[", "]", ",", ":", "+", "-", "main:", "'a'", "'\\n'", "\"\\x41\"", "0x", "0b", "1.5e3", "inf", "nan"]
            .map(String::from),
    );
    let numbers = [
        "2147483647",
        "2147483648",
        "4294967295",
        "4294967296",
        "0x7fffffff",
        "0xffffffff",
        "9223372036854775807",
        "18446744073709551615",
        "0xffffffffffffffff",
        "170141183460469231731687303715884105727",
        "0x7fffffffffffffffffffffffffffffff",
    ];
    tokens.extend(numbers.map(String::from));
    tokens.iter().map(|t| format!("\"{}\"\n", t.replace('\\', "\\\\").replace('"', "\\\""))).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).join("seeds"));
    let mut count = 0usize;
    // Larger inputs (images with big data sections, their disassembly)
    // would only slow the fuzzers down: they are left out.
    let mut put = |target: &str, name: &str, bytes: &[u8]| {
        if bytes.len() > MAX_SEED {
            return Ok(());
        }
        count += 1;
        write(&dir, target, name, bytes)
    };
    for p in pvm::programs::PROGRAMS {
        let images = if p.kind == "b" {
            put("pvm_bf", p.name, &[&[0u8][..], p.source.as_bytes()].concat())?;
            put("pvm_bf", &format!("{}-input", p.name), &[&[3u8][..], b"hi\n", p.source.as_bytes()].concat())?;
            vec![
                ("opt", pvm::bf::compile(p.source.as_bytes(), true)?),
                ("noopt", pvm::bf::compile(p.source.as_bytes(), false)?),
            ]
        } else {
            put("pvm_asm", p.name, p.source.as_bytes())?;
            vec![("", pvm::asm::assemble(p.name, p.source)?)]
        };
        for (suffix, image) in images {
            let name = if suffix.is_empty() { p.name.to_string() } else { format!("{}-{suffix}", p.name) };
            put("pvm_image", &name, &image.to_bytes())?;
            put("pvm_asm", &format!("{name}-disasm"), pvm::disasm::disassemble(&image).as_bytes())?;
        }
    }
    const MIB: u8 = 3; // selector byte 1: (3 % 8) + 1 = 4 MiB of RAM
    for g in guests::GUESTS {
        match g.boot {
            guests::Boot::Elf => put("vmm_loader", g.name, &[&[0, MIB][..], g.image].concat())?,
            _ => put("vmm_loader", &format!("{}-flat", g.name), &[&[1, MIB][..], g.image].concat())?,
        }
    }
    put("vmm_loader", "hello64-elf", &[&[0, MIB][..], guests::HELLO64_ELF].concat())?;
    for base in 0..4u8 {
        put("vmm_loader", &format!("edit-base{base}"), &[2, MIB, base])?;
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for n in 0..16 {
        let bytes: Vec<u8> = (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        put("pvm_differential", &format!("random-{n}"), &bytes)?;
    }
    // wasm_frontend: each WASI program as raw bytes (mode byte 0), and
    // pseudo-random bytes for wasm-smith (mode byte 1).
    for p in wasm_programs::PROGRAMS {
        put("wasm_frontend", &format!("{}-raw", p.name), &[&[0u8][..], p.wasm].concat())?;
    }
    for n in 0..16 {
        let bytes: Vec<u8> = std::iter::once(1u8)
            .chain((0..4096).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }))
            .collect();
        put("wasm_frontend", &format!("smith-{n}"), &bytes)?;
    }
    let snapshots = snapshots(&dir);
    for (name, state) in &snapshots {
        put("vmm_snapshot", name, state)?;
    }
    for (name, frame) in frames(snapshots.first().map(|(_, s)| s.as_slice()).unwrap_or_default()) {
        put("vmm_wire", name, &frame)?;
    }
    for (name, bytes) in ft_seeds() {
        put("vmm_ft", &name, &bytes)?;
    }
    std::fs::write(dir.join("pvm_asm.dict"), asm_dictionary())?;
    println!("wrote {count} seed files and pvm_asm.dict under {}", dir.display());
    Ok(())
}

/// State files of snapshots of a few built-in guests, taken by the real
/// VMM at a few exits (none where /dev/kvm cannot run them).
fn snapshots(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let tmp = dir.join("tmp-snapshot");
    for (guest, exits) in [("hello", "3"), ("ticks", "20"), ("modes", "5"), ("exits", "10")] {
        let path = tmp.to_string_lossy().into_owned();
        let args = [
            "run",
            guest,
            "--snapshot",
            &path,
            "--snapshot-after-exits",
            exits,
            "--snapshot-and-stop",
            "--no-seccomp",
            "--timeout",
            "10",
        ];
        let status = vmm::cli::main_with(&args, None, Box::new(std::io::sink()), &mut std::io::sink());
        if let (true, Ok(state)) = (status != 71, std::fs::read(&tmp)) {
            out.push((format!("{guest}-{exits}"), state));
        }
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(tmp.with_extension("mem"));
    }
    let _ = std::fs::remove_file(dir.join("tmp-snapshot.mem"));
    out
}

/// One frame of each kind of the migration protocol.
fn frames(snapshot: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    use vmm::migration::{wire, Message};
    let machine = vmm::snapshot::Machine { ram_mib: 128, timers: true, vcpus: 1 };
    let page = [0x5au8; 4096];
    let messages = [
        ("hello", Message::Hello { machine }),
        ("accept", Message::Accept),
        ("refuse", Message::Refuse { reason: "another RAM size" }),
        ("pages", Message::Pages { round: 2, first: 256, data: &page }),
        ("state", Message::State { snapshot }),
        ("done", Message::Done { pages: 4097 }),
        ("ready", Message::Ready),
        ("go", Message::Go),
        ("resumed", Message::Resumed),
    ];
    messages
        .into_iter()
        .map(|(name, m)| {
            let mut frame = Vec::new();
            wire::encode(&m, &mut frame);
            (name, frame)
        })
        .collect()
}

/// One frame of each kind of the supervision channel, and fault specs.
fn ft_seeds() -> Vec<(String, Vec<u8>)> {
    use vmm::ft::wire::{encode, Counters, Frame};
    let counters = Counters { checkpoints: 3, checkpoint_ns: 1_500_000, rollbacks: 1, ..Counters::default() };
    let path = "/tmp/vmm-supervise/slot-1".to_string();
    let frames = [
        Frame::Hello { pid: 4242, standby: true },
        Frame::Heartbeat { seq: 7, counters },
        Frame::Output { bytes: b"count 1\ncount 2\n".to_vec() },
        Frame::Commit { seq: 3, path: path.clone(), exits: 1200, took_ns: 250_000 },
        Frame::Discard,
        Frame::Failure { status: 73, cause: "a triple fault (KVM_EXIT_SHUTDOWN)".into(), unix_ns: 1 << 60 },
        Frame::End { status: 0 },
        Frame::Load { seq: 3, path: path.clone() },
        Frame::Loaded { seq: 3 },
        Frame::Go { seq: 3, path, attempt: 2 },
        Frame::Running { seq: 3 },
    ];
    let mut out: Vec<(String, Vec<u8>)> = frames
        .iter()
        .map(|f| {
            let mut bytes = Vec::new();
            encode(f, &mut bytes);
            (format!("frame-{}", f.name()), bytes)
        })
        .collect();
    let specs =
        ["shutdown-after-exits=200", "random=0.005,seed=3", "hang-after-ms=150,attempts=all", "crash-after-ms=5"];
    out.extend(specs.iter().enumerate().map(|(i, s)| (format!("spec-{i}"), s.as_bytes().to_vec())));
    out
}
