//! The built-in programs: `.pasm` (and Brainfuck) fixtures in `programs/`,
//! each with its expected output and status written in the file itself:
//!
//! ```text
//! ; expect: fib(37) = 24157817      one line of stdout (repeatable)
//! ; expect-status: 0                exit status of `pvm run`
//! ; expect-trap: division by zero   text the trap message must contain
//! ; args: --fuel 1000               extra `pvm run` arguments the test passes
//! ```
//! Brainfuck programs keep the same lines in `NAME.b.expect`.

/// One built-in program.
#[derive(Clone, Copy, Debug)]
pub struct Program {
    pub name: &'static str,
    /// `pasm` or `b`.
    pub kind: &'static str,
    pub source: &'static str,
    /// The expectation lines (from the source, or the `.expect` file).
    pub expect: &'static str,
    /// One of the six benchmark programs of ../shared/bench-peers.
    pub benchmark: bool,
}

/// The parsed expectation of a program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectation {
    pub stdout: String,
    pub status: i32,
    pub trap: Option<String>,
    pub args: Vec<String>,
}

impl Program {
    /// First comment line of the expectation text (a `.pasm` file's own
    /// header, a Brainfuck program's `.expect` file), without `; name:`.
    pub fn description(&self) -> &'static str {
        let first =
            self.expect.lines().find(|l| l.starts_with("; ") && !l.contains("expect") && !l.starts_with("; args"));
        first.map_or("", |l| l.trim_start_matches("; ").split_once(": ").map_or(l, |(_, d)| d))
    }

    /// The expectation written next to the program.
    pub fn expectation(&self) -> Expectation {
        let mut e = Expectation::default();
        for line in self.expect.lines() {
            if let Some(out) = line.strip_prefix("; expect: ") {
                e.stdout.push_str(out);
                e.stdout.push('\n');
            } else if line == "; expect:" {
                e.stdout.push('\n');
            } else if let Some(s) = line.strip_prefix("; expect-status: ") {
                e.status = s.trim().parse().unwrap_or(-1);
            } else if let Some(t) = line.strip_prefix("; expect-trap: ") {
                e.trap = Some(t.trim().to_string());
            } else if let Some(a) = line.strip_prefix("; args: ") {
                e.args = a.split_whitespace().map(String::from).collect();
            }
        }
        e
    }
}

macro_rules! pasm {
    ($name:literal, $bench:expr) => {
        Program {
            name: $name,
            kind: "pasm",
            source: include_str!(concat!("../programs/", $name, ".pasm")),
            expect: include_str!(concat!("../programs/", $name, ".pasm")),
            benchmark: $bench,
        }
    };
}

macro_rules! bf {
    ($name:literal) => {
        Program {
            name: $name,
            kind: "b",
            source: include_str!(concat!("../programs/", $name, ".b")),
            expect: include_str!(concat!("../programs/", $name, ".b.expect")),
            benchmark: false,
        }
    };
}

/// Every built-in program; `demo` is what `pvm run` runs by default.
pub const PROGRAMS: &[Program] = &[
    pasm!("demo", false),
    pasm!("fib", true),
    pasm!("loop", true),
    pasm!("sieve", true),
    pasm!("collatz", true),
    pasm!("mandelbrot", true),
    pasm!("matmul", true),
    pasm!("isa", false),
    pasm!("recursion", false),
    pasm!("selfmod", false),
    pasm!("indirect", false),
    pasm!("echo", false),
    pasm!("trap_div", false),
    pasm!("trap_oob", false),
    pasm!("trap_stack", false),
    pasm!("trap_fuel", false),
    pasm!("trap_syscall", false),
    pasm!("trap_invalid", false),
    pasm!("trap_jump", false),
    pasm!("threads_nullfork", false),
    pasm!("threads_pingpong", false),
    pasm!("threads_counter", false),
    pasm!("threads_racy", false),
    pasm!("threads_parallel", false),
    pasm!("threads_mutex", false),
    pasm!("threads_barrier", false),
    pasm!("threads_prodcons", false),
    pasm!("threads_deadlock_join", false),
    pasm!("threads_deadlock_wait", false),
    bf!("hello_bf"),
    bf!("loops_bf"),
];

/// The program `pvm run` runs with no argument.
pub const DEFAULT_PROGRAM: &str = "demo";

/// Looks a built-in program up by name.
pub fn find(name: &str) -> Option<&'static Program> {
    PROGRAMS.iter().find(|p| p.name == name)
}

/// The six benchmark programs, in the order of ../shared/bench-peers.
pub fn benchmarks() -> impl Iterator<Item = &'static Program> {
    PROGRAMS.iter().filter(|p| p.benchmark)
}
