//! x86-64 set-up as pure builders: memory map, GDT, page tables, boot
//! structures and entry registers. Only `Vm` performs the ioctls.

pub mod gdt;
pub mod layout;
pub mod paging;
pub mod pvh;
pub mod regs;
