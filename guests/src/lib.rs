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
}

/// Real-mode images are loaded like a boot sector.
const REAL_MODE_BASE: u64 = 0x7c00;
/// Protected- and long-mode images are loaded at 1 MiB, like a kernel.
const KERNEL_BASE: u64 = 0x10_0000;

/// Every built-in guest; `modes` is the default of `vmm run`.
pub const GUESTS: &[Guest] = &[
    Guest {
        name: "modes",
        description: "real mode, then climbs to protected and long mode by itself, printing in each",
        boot: Boot::Real { load: REAL_MODE_BASE },
        timers: false,
        image: image!("modes.bin"),
        expected_output: expected!("modes"),
        expected_status: 0,
        input: "",
    },
    Guest {
        name: "hello16",
        description: "flat binary in 16-bit real mode",
        boot: Boot::Real { load: REAL_MODE_BASE },
        timers: false,
        image: image!("hello16.bin"),
        expected_output: expected!("hello16"),
        expected_status: 0,
        input: "",
    },
    Guest {
        name: "hello32",
        description: "flat binary in 32-bit protected mode (VMM-built GDT)",
        boot: Boot::Protected { load: KERNEL_BASE },
        timers: false,
        image: image!("hello32.bin"),
        expected_output: expected!("hello32"),
        expected_status: 0,
        input: "",
    },
    Guest {
        name: "hello64",
        description: "flat binary in 64-bit long mode (VMM-built GDT and page tables)",
        boot: Boot::Long { load: KERNEL_BASE },
        timers: false,
        image: image!("hello64.bin"),
        expected_output: expected!("hello64"),
        expected_status: 0,
        input: "",
    },
    Guest {
        name: "traps",
        description: "tour of sensitive instructions: in/out 1/2/4 bytes, rep outsb, MMIO, cpuid, rdtsc, hlt",
        boot: Boot::Long { load: KERNEL_BASE },
        timers: false,
        image: image!("traps.bin"),
        expected_output: expected!("traps"),
        expected_status: 0,
        input: "",
    },
    Guest {
        name: "ticks",
        description: "64-bit IDT, PIC and PIT: two tasks switched round-robin on timer interrupts",
        boot: Boot::Long { load: KERNEL_BASE },
        timers: true,
        image: image!("ticks.bin"),
        expected_output: expected!("ticks"),
        expected_status: 0,
        input: "",
    },
    Guest {
        name: "triple",
        description: "a deliberate triple fault (ud2 with an empty IDT)",
        boot: Boot::Long { load: KERNEL_BASE },
        timers: false,
        image: image!("triple.bin"),
        expected_output: expected!("triple"),
        expected_status: STATUS_TRIPLE_FAULT,
        input: "",
    },
    Guest {
        name: "echo",
        description: "reads a line from the serial port (standard input) and echoes it in upper case",
        boot: Boot::Long { load: KERNEL_BASE },
        timers: false,
        image: image!("echo.bin"),
        expected_output: expected!("echo"),
        expected_status: 0,
        input: "Hello, serial!\n",
    },
    Guest {
        name: "exits",
        description: "PVH ELF: 100000 port-I/O exits in a tight loop (the exit benchmark)",
        boot: Boot::Elf,
        timers: false,
        image: image!("exits.elf"),
        expected_output: expected!("exits"),
        expected_status: 0,
        input: "",
    },
    Guest {
        name: "hello",
        description: "PVH ELF: prints and checks its hvm_start_info (also boots on QEMU microvm)",
        boot: Boot::Elf,
        timers: false,
        image: image!("hello.elf"),
        expected_output: expected!("hello"),
        expected_status: 0,
        input: "",
    },
];

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
