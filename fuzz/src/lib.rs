//! Helpers shared by the fuzz targets in `fuzz_targets/`: reference models
//! the targets compare the real code with, and the structure-aware ELF
//! mutator. Each model is small enough to be checked by reading it; the
//! unit tests below pin it on hand-made cases.

pub mod bf;
pub mod elf;

use pvm::machine::SysIo;

/// Guest stdout that keeps only the first `keep` bytes and counts the rest,
/// so a program writing megabytes in a loop costs no memory; stdin is
/// `input`. A `sys 7` sleep is added to `slept` and does not wait: one
/// instruction can ask for 2^64 - 1 µs.
#[derive(Debug, Default)]
pub struct BoundedIo {
    pub input: Vec<u8>,
    pub read_pos: usize,
    pub output: Vec<u8>,
    pub written: u64,
    pub keep: usize,
    pub slept: std::time::Duration,
}

impl BoundedIo {
    /// Empty stdout keeping up to `keep` bytes, stdin `input`.
    pub fn new(input: &[u8], keep: usize) -> Self {
        BoundedIo { input: input.to_vec(), keep, ..Default::default() }
    }
}

impl SysIo for BoundedIo {
    fn write(&mut self, bytes: &[u8]) {
        let room = self.keep.saturating_sub(self.output.len()).min(bytes.len());
        self.output.extend_from_slice(&bytes[..room]);
        self.written += bytes.len() as u64;
    }
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let rest = self.input.get(self.read_pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.read_pos += n;
        n
    }
    fn sleep(&mut self, time: std::time::Duration) {
        self.slept = self.slept.saturating_add(time);
    }
}

/// An upper bound on the zero padding that `.zero`, `.align` and `.org`
/// lines of a `.pasm` source can ask for: the sum of every number written
/// on such a line (a `.zero` needs a constant, so labels cannot add to it).
/// The assembler accepts padding up to the largest memory (2 GiB), which
/// it materialises; the assembler target skips sources above a small
/// budget so that one 20-byte line cannot make an execution allocate and
/// disassemble gigabytes. Counting too much only skips more inputs.
pub fn padding_bound(source: &str) -> u128 {
    source
        .split('\n')
        .filter(|line| [".zero", ".align", ".org"].iter().any(|d| line.contains(d)))
        .map(|line| numbers(line).fold(0u128, u128::saturating_add))
        .fold(0, u128::saturating_add)
}

/// The integer literals of a line, lexed as the assembler's lexer does
/// (`0x`, `0b`, decimal, `_` separators; a token that is not a number the
/// assembler rejects counts as `u128::MAX`; a quote counts as 127, the
/// most a character literal can be). A digit inside an identifier (`r15`)
/// is not a literal.
fn numbers(line: &str) -> impl Iterator<Item = u128> + '_ {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphabetic() || c == b'_' || c == b'.' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.') {
                i += 1;
            }
        } else if c.is_ascii_digit() {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric()
                    || bytes[i] == b'.'
                    || bytes[i] == b'_'
                    || ((bytes[i] == b'-' || bytes[i] == b'+') && matches!(bytes[i - 1], b'e' | b'E')))
            {
                i += 1;
            }
            let token: String = line[start..i].chars().filter(|&c| c != '_').collect();
            let value = if let Some(h) = token.strip_prefix("0x").or_else(|| token.strip_prefix("0X")) {
                u128::from_str_radix(h, 16).ok()
            } else if let Some(b) = token.strip_prefix("0b") {
                u128::from_str_radix(b, 2).ok()
            } else {
                token.parse::<u128>().ok()
            };
            out.push(value.unwrap_or(u128::MAX));
        } else {
            // A character literal is at most 127; each quote counts as one.
            out.push(if c == b'\'' { 127 } else { 0 });
            i += 1;
        }
    }
    out.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_bound_sums_the_numbers_of_padding_lines_only() {
        assert_eq!(padding_bound("main: li r1, 0x7fffffff\n sys 0\n"), 0);
        assert_eq!(padding_bound(".data\n .zero 0x10\n x: .align 8\n .org 1_000\n"), 16 + 8 + 1000);
        assert_eq!(padding_bound(" .zero 0x100000+0x100000\n"), 0x200000);
        assert_eq!(padding_bound(" .zero r15\n"), 0, "r15 is a register, not a number");
        assert_eq!(padding_bound(" .zero 'a'\n"), 254);
        assert_eq!(padding_bound(" .zero 99999999999999999999999999999999999999999\n"), u128::MAX);
    }

    #[test]
    fn bounded_io_keeps_a_prefix_and_counts_everything() {
        let mut io = BoundedIo::new(b"ab", 3);
        io.write(b"hello");
        io.write(b"!");
        assert_eq!((io.output.as_slice(), io.written), (&b"hel"[..], 6));
        let mut buf = [0u8; 4];
        assert_eq!(io.read(&mut buf), 2);
        assert_eq!(io.read(&mut buf), 0);
        let started = std::time::Instant::now();
        io.sleep(std::time::Duration::from_secs(3600));
        io.sleep(std::time::Duration::MAX);
        assert_eq!(io.slept, std::time::Duration::MAX, "sleeps add up, saturating");
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "and do not wait");
    }
}
