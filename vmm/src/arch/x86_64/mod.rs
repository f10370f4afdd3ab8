//! x86-64 set-up as pure builders: memory map, GDT, page tables, boot
//! structures and entry registers. Only `Vm` performs the ioctls.

pub mod cpuid;
pub mod e820;
pub mod gdt;
pub mod layout;
pub mod mptable;
pub mod multiboot;
pub mod paging;
pub mod pvh;
pub mod regs;
pub mod zeropage;
