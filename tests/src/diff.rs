//! Differential runs: the interpreter and the translator must agree to the
//! last bit on every program: output, exit status, trap and its pc, retired
//! instructions, final registers and a checksum of all memory.

use pvm::image::Image;
use pvm::interp::Outcome;
use pvm::jit::JitStats;
use pvm::machine::BufferIo;
use pvm::run::{self, Engine, LoadError, RunConfig};

/// Everything a run leaves behind that both engines must agree on.
#[derive(Debug, PartialEq, Eq)]
pub struct Final {
    pub outcome: Outcome,
    pub stdout: Vec<u8>,
    pub regs: [u64; 16],
    pub pc: u64,
    pub retired: u64,
    pub mem: u64,
}

/// Runs `image` with `cfg` and `input` on stdin.
pub fn run_on(image: &Image, cfg: RunConfig, input: &[u8]) -> (Final, Option<JitStats>) {
    try_run_on(image, cfg, input).expect("runs")
}

/// The same, or the error that kept the program from running.
///
/// # Errors
///
/// What `pvm::run::run_image` returns: a program that does not fit in
/// memory, a translator failure.
pub fn try_run_on(image: &Image, cfg: RunConfig, input: &[u8]) -> Result<(Final, Option<JitStats>), LoadError> {
    let mut io = BufferIo { input: input.to_vec(), ..Default::default() };
    let r = run::run_image(image, &cfg, None, None, &mut io)?;
    let m = &r.machine;
    let f = Final {
        outcome: r.outcome,
        stdout: io.output,
        regs: m.regs,
        pc: m.pc,
        retired: m.retired,
        mem: m.mem_checksum(),
    };
    Ok((f, r.jit))
}

/// The translator's hotness thresholds every differential run tries: 1
/// first (every block translated at its first entry: the most translated
/// code), then 2 (every block interpreted once, then translated: the most
/// changes between the tiers) and the default.
pub fn thresholds() -> Vec<u32> {
    let mut t = vec![1, 2, pvm::jit::DEFAULT_THRESHOLD];
    t.dedup();
    t
}

/// Runs `image` on both engines and returns both results: the translator's
/// with threshold 1 (every block translated). Its runs with the other
/// [`thresholds`], interpreted and translated blocks mixed, must end
/// exactly as the interpreter's run: this panics if they do not.
pub fn both(image: &Image, cfg: RunConfig, input: &[u8]) -> (Final, Final, JitStats) {
    let (interp, _) = run_on(image, RunConfig { engine: Engine::Interp, ..cfg }, input);
    let (jit, stats) = run_on(image, RunConfig { engine: Engine::Jit, jit_threshold: 1, ..cfg }, input);
    for t in thresholds().into_iter().skip(1) {
        let (tiered, _) = run_on(image, RunConfig { engine: Engine::Jit, jit_threshold: t, ..cfg }, input);
        assert_eq!(interp, tiered, "the translator with --jit-threshold {t} disagrees with the interpreter");
    }
    (interp, jit, stats.expect("jit stats"))
}

/// Checks that both engines agree on `image`; returns the translator's
/// statistics.
pub fn agree(what: &str, image: &Image, cfg: RunConfig, input: &[u8]) -> JitStats {
    let (interp, jit, stats) = both(image, cfg, input);
    assert_eq!(interp, jit, "{what}: the engines disagree");
    stats
}

/// Checks that both engines agree on `image` run to the end, and when the
/// fuel stops them at `points` evenly spaced instructions, the last ones
/// included. Returns the interpreter's full run.
pub fn agree_at_fuel_points(what: &str, image: &Image, points: u64) -> Final {
    agree(what, image, RunConfig::default(), b"");
    let (full, _) = run_on(image, RunConfig { engine: Engine::Interp, ..Default::default() }, b"");
    let fuels = (1..points).map(|k| full.retired * k / points).chain([full.retired - 1, full.retired]);
    for fuel in fuels {
        agree(&format!("{what}, fuel {fuel}"), image, RunConfig { fuel: Some(fuel), ..Default::default() }, b"");
    }
    full
}
