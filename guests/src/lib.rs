//! Tiny x86 guest kernels for the `vmm`, assembled from `asm/*.S` with GNU
//! `as` and `ld` when this crate builds (no binaries are committed).
//!
//! Each guest prints on the COM1 serial port and ends by writing a status
//! byte to the debug-exit port 0xf4. Its exact expected serial output sits
//! next to its source as `asm/NAME.out`; its expected status is in [`GUESTS`].
//!
//! ```
//! let hello = guests::find("hello").unwrap();
//! assert!(hello.image.starts_with(b"\x7fELF"));
//! assert_eq!(hello.expected_output, "Hello from a PVH guest!\nhvm_start_info: magic ok\n");
//! ```

/// How the VMM should start a guest image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boot {
    /// Flat binary, loaded at `load` and entered there in 16-bit real mode.
    Real { load: u64 },
    /// Flat binary, entered at `load` in 32-bit protected mode (flat GDT).
    Protected { load: u64 },
    /// Flat binary, entered at `load` in 64-bit long mode (identity paging).
    Long { load: u64 },
    /// An ELF file: PVH entry if it has the note, else its ELF64 entry.
    Elf,
    /// A kernel booted by the protocol it speaks, as QEMU's `-kernel` would
    /// (here: Multiboot), on a PC with its interrupt controllers and timer.
    Kernel,
}

/// Exit status the VMM uses when the guest triple-faults (see `vmm::ExitCode`).
pub const STATUS_TRIPLE_FAULT: i32 = 73;

/// One built-in guest.
#[derive(Clone, Copy, Debug)]
pub struct Guest {
    /// Name used on the command line (`vmm run NAME`).
    pub name: &'static str,
    /// One line saying what it shows.
    pub description: &'static str,
    /// How the VMM starts it.
    pub boot: Boot,
    /// Whether it needs KVM's in-kernel interrupt controller and PIT.
    pub timers: bool,
    /// The image bytes as linked by the build script.
    pub image: &'static [u8],
    /// Exact serial output of a correct run.
    pub expected_output: &'static str,
    /// Exit status of the `vmm` process for a correct run.
    pub expected_status: i32,
    /// What the test types on the serial port (the VMM's standard input).
    pub input: &'static str,
}

macro_rules! image {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $file))
    };
}

macro_rules! expected {
    ($name:literal) => {
        include_str!(concat!("../asm/", $name, ".out"))
    };
    ($dir:literal, $name:literal) => {
        include_str!(concat!("../", $dir, "/", $name, ".out"))
    };
}

/// Real-mode images are loaded like a boot sector.
const REAL_MODE_BASE: u64 = 0x7c00;
/// Protected- and long-mode images are loaded at 1 MiB, like a kernel.
const KERNEL_BASE: u64 = 0x10_0000;

/// A guest with the usual settings: no timers, status 0, no serial input,
/// expected output in `asm/NAME.out`.
macro_rules! guest {
    ($name:literal, $file:literal, $boot:expr, $description:literal) => {
        Guest {
            name: $name,
            description: $description,
            boot: $boot,
            timers: false,
            image: image!($file),
            expected_output: expected!($name),
            expected_status: 0,
            input: "",
        }
    };
}

/// Every built-in guest; `modes` is the default of `vmm run`.
pub const GUESTS: &[Guest] = &[
    guest!(
        "modes",
        "modes.bin",
        Boot::Real { load: REAL_MODE_BASE },
        "real mode, then climbs to protected and long mode by itself, printing in each"
    ),
    guest!("hello16", "hello16.bin", Boot::Real { load: REAL_MODE_BASE }, "flat binary in 16-bit real mode"),
    guest!(
        "hello32",
        "hello32.bin",
        Boot::Protected { load: KERNEL_BASE },
        "flat binary in 32-bit protected mode (VMM-built GDT)"
    ),
    guest!(
        "hello64",
        "hello64.bin",
        Boot::Long { load: KERNEL_BASE },
        "flat binary in 64-bit long mode (VMM-built GDT and page tables)"
    ),
    guest!(
        "traps",
        "traps.bin",
        Boot::Long { load: KERNEL_BASE },
        "tour of sensitive instructions: in/out 1/2/4 bytes, rep outsb, MMIO, cpuid, rdtsc, hlt"
    ),
    Guest {
        timers: true,
        ..guest!(
            "ticks",
            "ticks.bin",
            Boot::Long { load: KERNEL_BASE },
            "64-bit IDT, PIC and PIT: two tasks switched round-robin on timer interrupts"
        )
    },
    Guest {
        timers: true,
        ..guest!(
            "smp",
            "smp.bin",
            Boot::Long { load: KERNEL_BASE },
            "SMP: finds the CPUs in the MP table, starts them with INIT-SIPI-SIPI, lock xadd, IPI ping-pong (--vcpus N)"
        )
    },
    Guest {
        timers: true,
        ..guest!(
            "uartirq",
            "uartirq.bin",
            Boot::Long { load: KERNEL_BASE },
            "the UART's THR-empty interrupt on IRQ 4, through the in-kernel PIC"
        )
    },
    Guest {
        expected_status: STATUS_TRIPLE_FAULT,
        ..guest!(
            "triple",
            "triple.bin",
            Boot::Long { load: KERNEL_BASE },
            "a deliberate triple fault (ud2 with an empty IDT)"
        )
    },
    Guest {
        input: "Hello, serial!\n",
        ..guest!(
            "echo",
            "echo.bin",
            Boot::Long { load: KERNEL_BASE },
            "reads a line from the serial port (standard input) and echoes it in upper case"
        )
    },
    guest!("exits", "exits.elf", Boot::Elf, "PVH ELF: 100000 port-I/O exits in a tight loop (the exit benchmark)"),
    guest!(
        "workset",
        "workset.elf",
        Boot::Elf,
        "PVH ELF: rewrites a working set (--cmdline \"mib=N passes=P\") and checks it, for live migration"
    ),
    guest!(
        "count",
        "count.elf",
        Boot::Elf,
        "PVH ELF: prints a numbered sequence (--cmdline \"n=N work=W pages=P\"), for checkpoints and rollback"
    ),
    guest!(
        "ib700",
        "ib700.elf",
        Boot::Elf,
        "PVH ELF: pets the IB700 watchdog, stops on demand (--cmdline \"pets=N hang=K\" or a byte on COM1)"
    ),
    guest!(
        "hello",
        "hello.elf",
        Boot::Elf,
        "PVH ELF: prints and checks its hvm_start_info (also boots on QEMU microvm)"
    ),
    Guest {
        name: "mbkernel",
        description: "Multiboot kernel in C: checks the handshake, prints its info block (also boots on QEMU -M pc)",
        boot: Boot::Kernel,
        timers: false,
        image: image!("mbkernel.elf"),
        expected_output: expected!("c", "mbkernel"),
        expected_status: 0,
        input: "",
    },
];

/// `hello` linked with `ld -m elf_i386 -Ttext=0x100000` and no script, as
/// a new user links a PVH kernel: its note's own PT_LOAD lies at 0x80480b4,
/// outside 128 MiB of RAM, which QEMU skips and so does the VMM.
pub const HELLO_PLAIN_LD_ELF: &[u8] = image!("hello-plain-ld.elf");

/// `hello64` linked as a plain ELF64 (no PVH note), for the ELF64 loader.
pub const HELLO64_ELF: &[u8] = image!("hello64.elf");

/// The guest `vmm run` boots when given no name.
pub const DEFAULT_GUEST: &str = "modes";

/// Looks a built-in guest up by name.
pub fn find(name: &str) -> Option<&'static Guest> {
    GUESTS.iter().find(|g| g.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_is_built_and_has_an_expectation() {
        for g in GUESTS {
            assert!(!g.image.is_empty(), "{} is empty", g.name);
            assert!(g.expected_output.ends_with('\n'), "{}.out", g.name);
        }
        assert!(find(DEFAULT_GUEST).is_some());
        assert!(HELLO64_ELF.starts_with(b"\x7fELF\x02"));
    }

    #[test]
    fn pvh_guests_carry_the_xen_note() {
        for name in ["hello", "exits"] {
            let image = find(name).unwrap().image;
            let note = image.windows(4).any(|w| w == b"Xen\0");
            assert!(note, "{name} has no PVH note");
        }
    }
}
