//! The Brainfuck front end, with and without optimisation, against a
//! reference interpreter (`virtlab_fuzz::bf`).
//!
//! Input: byte 0 is the length n (mod 17) of the program's stdin, the next
//! n bytes are stdin, the rest is the program.
//!
//! Checks: both compilations accept the same programs and report the same
//! unmatched bracket as the reference; each compiled image verifies and
//! runs on the interpreter. Each Brainfuck command compiles to 1 to 3 pvm
//! instructions unoptimised (optimised, one instruction may do many), plus
//! 3 before and 2 after. So:
//! - a program the reference finishes in S commands, never touching a
//!   cell off the tape, exits 0 with the reference's output on both
//!   compilations given fuel 3 * S + 5;
//! - otherwise the unoptimised run, given one unit of fuel per command the
//!   reference ran with defined behaviour, runs out of fuel without a trap
//!   and with a prefix of the reference's output; the optimised run's
//!   output agrees with the reference's as far as both go (the front end
//!   leaves the tape's outside undefined, so nothing more is claimed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvm::interp::{InterpStats, Interpreter, Outcome};
use pvm::machine::Machine;
use pvm::trap::TrapKind;
use virtlab_fuzz::bf::{self, BracketError, End};
use virtlab_fuzz::BoundedIo;

const STEPS: u64 = 20_000;

fn prefix_compatible(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let n = usize::from(n % 17).min(rest.len());
    let (input, program) = rest.split_at(n);

    let partner = bf::match_brackets(program);
    let compiled = [true, false].map(|optimize| pvm::bf::compile(program, optimize));
    let partner = match partner {
        Ok(p) => p,
        Err(e) => {
            let expected = match e {
                BracketError::UnmatchedOpen(at) => pvm::bf::BfError::UnmatchedOpen(at),
                BracketError::UnmatchedClose(at) => pvm::bf::BfError::UnmatchedClose(at),
            };
            for c in &compiled {
                assert_eq!(c.as_ref().err(), Some(&expected), "bracket error");
            }
            return;
        }
    };
    let reference = bf::run(program, &partner, input, STEPS);
    let what = format!("reference {:?} after {} commands", reference.end, reference.steps);
    for (c, optimize) in compiled.iter().zip([true, false]) {
        let image = match c {
            Ok(image) => image,
            Err(e) => panic!("balanced program rejected (optimize {optimize}): {e}"),
        };
        assert_eq!(pvm::verify::verify(image), Ok(()), "compiled image does not verify (optimize {optimize})");
        let fuel = match reference.end {
            End::Finished => 3 * reference.steps + 5,
            End::OutOfSteps => reference.steps,
            End::LeftTape => reference.steps - 1,
        };
        let mut m = Machine::new(image, 1).unwrap_or_else(|e| panic!("compiled image does not load: {e}"));
        let mut io = BoundedIo::new(input, 1 << 16);
        let outcome = Interpreter::new(&m).run::<false, false>(
            &mut m,
            &mut io,
            fuel,
            &mut InterpStats::default(),
            &mut std::io::sink(),
        );
        let what = format!("optimize {optimize}, fuel {fuel}, {what}");
        if reference.end == End::Finished {
            assert_eq!(outcome, Outcome::Exited(0), "{what}");
            assert_eq!(io.output, reference.output, "{what}");
        } else if optimize {
            assert!(prefix_compatible(&io.output, &reference.output), "{what}");
        } else {
            assert!(
                matches!(&outcome, Outcome::Trapped(t) if t.kind == TrapKind::FuelExhausted),
                "{what}: {outcome:?}"
            );
            assert!(reference.output.starts_with(&io.output), "{what}");
        }
    }
});
