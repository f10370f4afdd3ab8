//! A bytecode process VM: one ISA, an assembler and disassembler, a
//! load-time verifier and an interpreter.
//!
//! A program is `.pasm` text (see [`asm`]), a `.pbc` image (see [`image`])
//! or Brainfuck (see [`bf`]). Loading verifies it ([`verify`]); the
//! [`machine::Machine`] holds registers and memory; the engine runs it.
//!
//! ```
//! use pvm::{asm, machine::{BufferIo, Machine}, interp::{Interpreter, Outcome, InterpStats}};
//!
//! let image = asm::assemble("x.pasm", "main: li r1, 6\n muli r1, r1, 7\n sys 3\n li r1, 0\n sys 0\n")?;
//! pvm::verify::verify(&image)?;
//! let mut m = Machine::new(&image, 1)?;
//! let mut io = BufferIo::default();
//! let outcome = Interpreter::new(&m).run::<false, false>(&mut m, &mut io, u64::MAX, &mut InterpStats::default(), &mut std::io::sink());
//! assert_eq!((outcome, io.output), (Outcome::Exited(0), b"42".to_vec()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod addr_map;
pub mod asm;
pub mod bench;
pub mod bench_threads;
pub mod bench_wasm;
pub mod bf;
pub mod cli;
pub mod disasm;
pub mod image;
pub mod interp;
pub mod isa;
pub mod jit;
pub mod kick;
pub mod machine;
pub mod memory;
pub mod peers;
pub mod plot;
pub mod programs;
pub mod run;
pub mod sandbox;
pub mod semantics;
pub mod threads;
pub mod trap;
pub mod verify;
pub mod wasm;
pub mod wasm_peers;
