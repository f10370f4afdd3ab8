//! Architecture-specific set-up.

pub mod x86_64;
