//! The guest programs of `pvm bench threads` (`pvm/programs/threads/`):
//! their sources, the parameters the bench writes into them, the timings
//! they print, and the outputs they must give.
//!
//! A program's parameters are `.quad` lines of its data section
//! (`n_forks: .quad 1000`); [`with_params`] rewrites them. Its stdout is
//! the checked result, then lines starting with `@` that carry what it
//! measured with `sys 8` (`@us 1234`, `@lat 1500`), which [`split_output`]
//! takes apart.

use super::ThreadBenchError;

/// One guest program: its name and source (a file server is its shape's
/// source followed by the shared `fs_report.pasm`).
#[derive(Clone, Copy, Debug)]
pub struct GuestProgram {
    pub name: &'static str,
    pub source: &'static str,
}

macro_rules! guest {
    ($name:literal) => {
        GuestProgram { name: $name, source: include_str!(concat!("../../programs/threads/", $name, ".pasm")) }
    };
}

pub const NULL_FORK: GuestProgram = guest!("nullfork");
pub const SIGNAL_WAIT: GuestProgram = guest!("signalwait");
pub const PARSUM: GuestProgram = guest!("parsum");
pub const FS_DISPATCH: GuestProgram = guest!("fs_dispatch");
pub const FS_SINGLE: GuestProgram = guest!("fs_single");
pub const FS_FSM: GuestProgram = guest!("fs_fsm");
pub const FS_REPORT: GuestProgram = guest!("fs_report");
pub const BALANCE: GuestProgram = guest!("balance");

/// Every program, for the tests that run each one as its file stands.
pub const ALL: [GuestProgram; 7] = [NULL_FORK, SIGNAL_WAIT, PARSUM, FS_DISPATCH, FS_SINGLE, FS_FSM, BALANCE];

impl GuestProgram {
    /// The text to assemble: the source, and the report part for a server.
    pub fn full_source(&self) -> String {
        if self.name.starts_with("fs_") && self.name != FS_REPORT.name {
            format!("{}\n{}", self.source, FS_REPORT.source)
        } else {
            self.source.to_string()
        }
    }

    /// The stdout written in the file (`; expect:` lines).
    pub fn expected_stdout(&self) -> String {
        self.source.lines().filter_map(|l| l.strip_prefix("; expect: ")).map(|l| format!("{l}\n")).collect()
    }
}

/// The most requests a file server's tables hold (`queue`, `done`).
pub const MAX_REQUESTS: usize = 2048;
/// The most worker threads fs_dispatch's `tids` holds.
pub const MAX_WORKERS: usize = 64;
/// The most tasks balance's tables (and its 4 KiB stacks at 4 MiB) hold.
pub const MAX_TASKS: usize = 1024;

/// Checks a size against what a program's tables hold.
///
/// # Errors
/// If `n` is 0 or above `max`.
pub fn check_size(what: &'static str, n: usize, max: usize) -> Result<(), ThreadBenchError> {
    if n == 0 || n > max {
        return Err(ThreadBenchError::Size { what, n, max });
    }
    Ok(())
}

/// `source` with the `.quad` line of each named parameter replaced by the
/// given values (one number or a comma-separated list).
///
/// # Errors
/// If a parameter has no `NAME: .quad` line in the source.
pub fn with_params(source: &str, params: &[(&str, String)]) -> Result<String, ThreadBenchError> {
    let mut lines: Vec<String> = source.lines().map(String::from).collect();
    for (name, value) in params {
        let prefix = format!("{name}:");
        let line = lines
            .iter_mut()
            .find(|l| l.strip_prefix(&prefix).is_some_and(|rest| rest.trim_start().starts_with(".quad")))
            .ok_or_else(|| ThreadBenchError::NoParam(name.to_string()))?;
        *line = format!("{name}: .quad {value}");
    }
    Ok(lines.join("\n") + "\n")
}

/// A run's stdout taken apart: the checked lines, and each `@name value`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GuestOutput {
    pub checked: String,
    pub timings: Vec<(String, u64)>,
}

impl GuestOutput {
    /// The values of every `@name` line, in order.
    pub fn all(&self, name: &str) -> Vec<u64> {
        self.timings.iter().filter(|(n, _)| n == name).map(|&(_, v)| v).collect()
    }

    /// The value of the one `@name` line.
    ///
    /// # Errors
    /// If there is none.
    pub fn one(&self, name: &str) -> Result<u64, ThreadBenchError> {
        self.all(name).first().copied().ok_or_else(|| ThreadBenchError::NoTiming(name.to_string()))
    }
}

/// Splits stdout into the checked lines and the `@` timings.
///
/// # Errors
/// If an `@` line is not `@name number`.
pub fn split_output(stdout: &str) -> Result<GuestOutput, ThreadBenchError> {
    let mut out = GuestOutput::default();
    for line in stdout.lines() {
        match line.strip_prefix('@') {
            Some(t) => {
                let bad = || ThreadBenchError::BadTiming(line.to_string());
                let (name, value) = t.split_once(' ').ok_or_else(bad)?;
                out.timings.push((name.to_string(), value.trim().parse().map_err(|_| bad())?));
            }
            None => {
                out.checked.push_str(line);
                out.checked.push('\n');
            }
        }
    }
    Ok(out)
}

const LCG_MUL: u64 = 6364136223846793005;
const LCG_ADD: u64 = 1442695040888963407;

/// What a file server or a task returns for request/task `i` after `rounds`
/// rounds of compute (the guests' loop: x = i + 1, x = x * A + C, x >> 33).
pub fn reply(i: u64, rounds: u64) -> u64 {
    let mut x = i + 1;
    for _ in 0..rounds {
        x = x.wrapping_mul(LCG_MUL).wrapping_add(LCG_ADD);
    }
    x >> 33
}

/// parsum's result for `n` items (whatever the number of threads).
pub fn parsum_total(n: u64) -> u64 {
    (0..n).map(|i| (i.wrapping_mul(i) ^ i) & 1023).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_replace_their_quad_line_and_nothing_else() {
        let src = "x: .quad 1\nxy: .quad 2\n  li r1, x\n";
        let out = with_params(src, &[("x", "5".into()), ("xy", "6, 7".into())]).unwrap();
        assert_eq!(out, "x: .quad 5\nxy: .quad 6, 7\n  li r1, x\n");
        assert!(matches!(with_params(src, &[("li r1", "1".into())]), Err(ThreadBenchError::NoParam(_))));
        assert!(matches!(with_params(src, &[("z", "1".into())]), Err(ThreadBenchError::NoParam(_))));
    }

    #[test]
    fn every_program_has_its_parameters_and_an_expectation() {
        for p in ALL {
            assert!(!p.expected_stdout().is_empty(), "{}", p.name);
        }
        for (p, names) in [
            (NULL_FORK, &["n_forks"][..]),
            (SIGNAL_WAIT, &["n_rounds"]),
            (PARSUM, &["n_items", "n_threads"]),
            (FS_DISPATCH, &["n_req", "n_workers", "disk_us", "work", "kinds"]),
            (FS_FSM, &["n_req", "disk_us", "work", "kinds"]),
            (BALANCE, &["n_tasks", "unit", "arrivals", "works"]),
        ] {
            let params: Vec<(&str, String)> = names.iter().map(|&n| (n, "1".to_string())).collect();
            with_params(&p.full_source(), &params).unwrap_or_else(|e| panic!("{}: {e}", p.name));
        }
    }

    #[test]
    fn sizes_outside_the_tables_are_refused() {
        assert!(check_size("requests", 1, MAX_REQUESTS).is_ok());
        assert!(check_size("requests", MAX_REQUESTS, MAX_REQUESTS).is_ok());
        assert!(matches!(check_size("requests", MAX_REQUESTS + 1, MAX_REQUESTS), Err(ThreadBenchError::Size { .. })));
        assert!(matches!(check_size("tasks", 0, MAX_TASKS), Err(ThreadBenchError::Size { .. })));
    }

    #[test]
    fn output_splits_into_checked_lines_and_timings() {
        let o = split_output("served 3\n@lat 10\n@lat 20\n@span 30\n").unwrap();
        assert_eq!(o.checked, "served 3\n");
        assert_eq!(o.all("lat"), [10, 20]);
        assert_eq!(o.one("span").unwrap(), 30);
        assert!(matches!(o.one("us"), Err(ThreadBenchError::NoTiming(_))));
        assert!(matches!(split_output("@lat\n"), Err(ThreadBenchError::BadTiming(_))));
        assert!(matches!(split_output("@lat x\n"), Err(ThreadBenchError::BadTiming(_))));
        assert_eq!(split_output("").unwrap(), GuestOutput::default());
    }

    #[test]
    fn the_expectations_in_the_files_are_what_the_formulas_give() {
        assert_eq!(PARSUM.expected_stdout(), format!("parsum 100000 over 2 = {}\n", parsum_total(100_000)));
        let kinds = [0u64, 1, 0, 0, 1, 0, 1, 0];
        let sum: u64 = (0..8).map(|i| reply(i, 100)).sum();
        let want = format!("served 8 requests, {} misses, checksum {sum}\n", kinds.iter().sum::<u64>());
        for p in [FS_DISPATCH, FS_SINGLE, FS_FSM] {
            assert_eq!(p.expected_stdout(), want, "{}", p.name);
        }
        let works = [1u64, 5, 2, 1, 3, 1];
        let sum: u64 = works.iter().enumerate().map(|(i, &w)| reply(i as u64, w * 100)).sum();
        assert_eq!(BALANCE.expected_stdout(), format!("balance 6 tasks, checksum {sum}\n"));
        assert_eq!(reply(0, 0), 0);
    }
}
