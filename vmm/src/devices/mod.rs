//! Device models. None of them knows about KVM: each sees `(offset, data)`.

pub mod serial;
pub mod simple;

pub use serial::{spawn_input, IrqLine, Serial};
pub use simple::{DebugExit, PostCode, Scratch};
