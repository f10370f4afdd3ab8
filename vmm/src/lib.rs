//! A small native VMM on Linux KVM.
//!
//! It boots tiny x86 guests in real, protected or long mode, traps what
//! they do (port I/O, MMIO, HLT, shutdowns, emulation failures), emulates
//! the devices behind those traps and can show every trap.
//!
//! The boot path: [`memory`] maps guest RAM, [`loader`] copies the image,
//! [`arch::x86_64`] writes the GDT, page tables and PVH start info and
//! computes the entry registers, and [`vm::Vm`] sets them with KVM ioctls.
//! The exit path: `KVM_RUN` returns an exit, [`vcpu::handle_exit`] hands
//! it to the [`bus::Bus`] that owns the address, and the device sees only
//! `(offset, data)`.
//!
//! ```no_run
//! use vmm::vm::{Image, RunOptions, Vm, VmConfig};
//!
//! let hello = guests::find("hello").unwrap();
//! let mut vm = Vm::new(&VmConfig::default(), &Image::Elf(hello.image), Box::new(std::io::stdout()))?;
//! let report = vm.run(RunOptions { stats: true, ..Default::default() })?;
//! assert_eq!(report.status(), 0);
//! # Ok::<(), vmm::vm::VmError>(())
//! ```

pub mod arch;
pub mod bench;
pub mod boot;
pub mod bus;
pub mod cli;
pub mod codec;
pub mod control;
pub mod controller;
pub mod devices;
pub mod error;
pub mod ft;
pub mod gdb;
pub mod kvmstate;
pub mod linux;
pub mod loader;
pub mod memory;
pub mod migration;
pub mod multiboot;
pub mod runloop;
pub mod seccomp;
pub mod smp;
pub mod snapshot;
pub mod statebench;
pub mod stats;
#[cfg(test)]
mod test_rng;
pub mod trace;
pub mod vcpu;
pub mod vm;
pub mod watchdog;

use arch::x86_64::layout::{KERNEL_LOAD, REAL_MODE_LOAD};
use arch::x86_64::regs::EntryMode;
use vm::{Image, VmConfig};

/// A built-in guest as the VMM boots it.
pub fn builtin_image(guest: &guests::Guest) -> (Image<'static>, VmConfig) {
    let flat = |mode, load| Image::Flat { bytes: guest.image, mode, load, entry: load };
    let image = match guest.boot {
        guests::Boot::Real { load } => flat(EntryMode::Real, load),
        guests::Boot::Protected { load } => flat(EntryMode::Protected, load),
        guests::Boot::Long { load } => flat(EntryMode::Long, load),
        guests::Boot::Elf => Image::Elf(guest.image),
        guests::Boot::Kernel => Image::Kernel(guest.image),
    };
    let pc = guest.boot == guests::Boot::Kernel;
    (image, VmConfig { timers: guest.timers || pc, ..VmConfig::default() })
}

/// Default load address of a flat binary started in `mode`.
pub fn default_load_addr(mode: EntryMode) -> u64 {
    match mode {
        EntryMode::Real => REAL_MODE_LOAD,
        EntryMode::Protected | EntryMode::Long => KERNEL_LOAD,
    }
}

/// A `Write` sink that can be read after the VM has taken it.
#[derive(Clone, Debug, Default)]
pub struct SharedBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// Takes what was written so far.
    pub fn take(&self) -> Vec<u8> {
        self.0.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}

impl std::io::Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
