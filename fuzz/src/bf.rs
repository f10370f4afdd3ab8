//! A reference Brainfuck interpreter with the semantics `pvm::bf`
//! documents: a tape of `pvm::bf::TAPE_LEN` 8-bit wrapping cells, `,` at end
//! of input leaves the cell unchanged. The front end says nothing of cells
//! outside the tape (the compiled pointer then reaches other memory), so
//! the reference stops at the first access outside it.

use pvm::bf::TAPE_LEN;

/// How a reference run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The program ran off its end.
    Finished,
    /// The step budget ran out first.
    OutOfSteps,
    /// A command touched a cell outside the tape: what follows is not
    /// defined by the front end.
    LeftTape,
}

/// A reference run: how it ended, the output so far, the commands executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub end: End,
    pub output: Vec<u8>,
    pub steps: u64,
}

/// Where each bracket's partner is, or `Err(position)` of the first
/// unmatched `]`, or of the innermost `[` left open at the end.
pub fn match_brackets(program: &[u8]) -> Result<Vec<usize>, BracketError> {
    let mut partner = vec![usize::MAX; program.len()];
    let mut open = Vec::new();
    for (i, &c) in program.iter().enumerate() {
        match c {
            b'[' => open.push(i),
            b']' => {
                let o = open.pop().ok_or(BracketError::UnmatchedClose(i))?;
                partner[o] = i;
                partner[i] = o;
            }
            _ => {}
        }
    }
    match open.last() {
        Some(&o) => Err(BracketError::UnmatchedOpen(o)),
        None => Ok(partner),
    }
}

/// An unmatched bracket and its byte position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BracketError {
    UnmatchedOpen(usize),
    UnmatchedClose(usize),
}

/// Runs `program` (brackets matched) on `input` for at most `max_steps`
/// commands; characters that are not commands cost nothing.
pub fn run(program: &[u8], partner: &[usize], input: &[u8], max_steps: u64) -> Run {
    let mut tape = vec![0u8; TAPE_LEN as usize];
    let mut ptr: i64 = 0;
    let mut pc = 0usize;
    let mut input = input.iter();
    let mut output = Vec::new();
    let mut steps = 0u64;
    while pc < program.len() {
        let c = program[pc];
        if !b"+-<>.,[]".contains(&c) {
            pc += 1;
            continue;
        }
        if steps == max_steps {
            return Run { end: End::OutOfSteps, output, steps };
        }
        steps += 1;
        match c {
            b'>' => ptr += 1,
            b'<' => ptr -= 1,
            _ => {
                let Some(cell) = usize::try_from(ptr).ok().and_then(|p| tape.get_mut(p)) else {
                    return Run { end: End::LeftTape, output, steps };
                };
                match c {
                    b'+' => *cell = cell.wrapping_add(1),
                    b'-' => *cell = cell.wrapping_sub(1),
                    b'.' => output.push(*cell),
                    b',' => {
                        if let Some(&b) = input.next() {
                            *cell = b;
                        }
                    }
                    b'[' if *cell == 0 => pc = partner[pc],
                    b']' if *cell != 0 => pc = partner[pc],
                    _ => {}
                }
            }
        }
        pc += 1;
    }
    Run { end: End::Finished, output, steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(p: &[u8], input: &[u8], steps: u64) -> Run {
        run(p, &match_brackets(p).unwrap(), input, steps)
    }

    #[test]
    fn runs_loops_and_io() {
        // 3 * 11 = 33 = '!'
        let r = go(b"+++[>+++++++++++<-]>.", b"", 1000);
        assert_eq!((r.end, r.output.as_slice()), (End::Finished, &b"!"[..]));
        let r = go(b",.,.,.", b"ab", 1000);
        assert_eq!(r.output, b"abb", "end of input leaves the cell unchanged");
        assert_eq!(go(b"-.", b"", 10).output, [255]);
    }

    #[test]
    fn stops_on_budget_and_off_the_tape() {
        assert_eq!(go(b"+[]", b"", 100).end, End::OutOfSteps);
        assert_eq!(go(b"<>", b"", 100).end, End::Finished, "moving is not touching");
        assert_eq!(go(b"<+", b"", 100).end, End::LeftTape);
    }

    #[test]
    fn brackets_are_matched_like_the_front_end() {
        assert_eq!(match_brackets(b"+]"), Err(BracketError::UnmatchedClose(1)));
        assert_eq!(match_brackets(b"[[]"), Err(BracketError::UnmatchedOpen(0)));
        assert_eq!(match_brackets(b"[]"), Ok(vec![1, 0]));
    }
}
