//! Loading a program from a name or a file, and running it on an engine.

use std::time::{Duration, Instant};

use crate::image::{Image, ImageError};
use crate::interp::{InterpStats, Interpreter, Outcome};
use crate::jit::{Jit, JitError, JitStats};
use crate::machine::{Machine, MachineError, SysIo};
use crate::sandbox::{self, SandboxError};
use crate::threads::engine::SliceEngine;
use crate::threads::{hybrid, kernel, Model, ThreadConfig, ThreadReport};
use crate::verify::{verify, VerifyError};
use crate::{asm, bf, programs, wasm};

/// Errors before a program runs.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Asm(#[from] asm::AsmError),
    #[error("{path}: malformed image")]
    Image {
        path: String,
        #[source]
        source: ImageError,
    },
    #[error("{path}: Brainfuck")]
    Bf {
        path: String,
        #[source]
        source: bf::BfError,
    },
    #[error("{path}: rejected by the verifier")]
    Verify {
        path: String,
        #[source]
        source: VerifyError,
    },
    #[error("{path}: WebAssembly")]
    Wasm {
        path: String,
        #[source]
        source: crate::wasm::WasmError,
    },
    #[error("cannot load the program into memory")]
    Machine(#[from] MachineError),
    #[error("the translator failed")]
    Jit(#[from] JitError),
    #[error("cannot sandbox the program")]
    Sandbox(#[from] SandboxError),
}

/// Options of the program loader.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Optimise Brainfuck (fold runs, `[-]` to a store).
    pub bf_optimize: bool,
    /// How to compile WebAssembly.
    pub wasm: wasm::Options,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { bf_optimize: true, wasm: wasm::Options::default() }
    }
}

/// A loaded program: its image and, if it was WebAssembly, what running
/// it needs besides.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub image: Image,
    pub wasm: Option<WasmInfo>,
}

/// What a compiled WebAssembly command needs to run (the memory, where its
/// linear memory's descriptor is for the WASI host, its function names)
/// and what compiling it took.
pub type WasmInfo = wasm::CompileInfo;

/// Turns source text of the given kind (`pasm` or `b`) into a verified image.
pub fn build(path: &str, kind: &str, source: &[u8], opts: LoadOptions) -> Result<Image, LoadError> {
    build_program(path, kind, source, opts).map(|l| l.image)
}

/// [`build`], keeping what a WebAssembly program needs to run.
pub fn build_program(path: &str, kind: &str, source: &[u8], opts: LoadOptions) -> Result<Loaded, LoadError> {
    let mut info = None;
    let image = if kind == "b" {
        bf::compile(source, opts.bf_optimize).map_err(|source| LoadError::Bf { path: path.into(), source })?
    } else if wasm::is_wasm(source) {
        let c = wasm::compile(source, &opts.wasm).map_err(|source| LoadError::Wasm { path: path.into(), source })?;
        info = Some(c.info);
        c.image
    } else if Image::is_image(source) {
        Image::from_bytes(source).map_err(|source| LoadError::Image { path: path.into(), source })?
    } else {
        asm::assemble(path, &String::from_utf8_lossy(source))?
    };
    verify(&image).map_err(|source| LoadError::Verify { path: path.into(), source })?;
    Ok(Loaded { image, wasm: info })
}

/// Loads a built-in program by name, or a `.pasm`, `.pbc` or `.b` file.
pub fn load(spec: &str, opts: LoadOptions) -> Result<Image, LoadError> {
    load_program(spec, opts).map(|l| l.image)
}

/// [`load`], for any program, WebAssembly too (a `.wasm` file).
pub fn load_program(spec: &str, opts: LoadOptions) -> Result<Loaded, LoadError> {
    if let Some(p) = programs::find(spec) {
        if !std::path::Path::new(spec).exists() {
            return build_program(p.name, p.kind, p.source.as_bytes(), opts);
        }
    }
    let bytes = std::fs::read(spec).map_err(|source| {
        let hint = if spec.contains('/') || spec.contains('.') {
            ""
        } else {
            " (not a file, nor a built-in program: see `pvm list`)"
        };
        LoadError::Read { path: format!("{spec}{hint}"), source }
    })?;
    let kind = if spec.ends_with(".b") || spec.ends_with(".bf") { "b" } else { "pasm" };
    build_program(spec, kind, &bytes, opts)
}

/// Which engine runs the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The interpreter.
    Interp,
    /// The dynamic binary translator.
    Jit,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Interp => "interp",
            Engine::Jit => "jit",
        }
    }
}

/// How to run a program.
#[derive(Clone, Copy, Debug)]
pub struct RunConfig {
    pub engine: Engine,
    pub mem_mib: u64,
    pub fuel: Option<u64>,
    /// Collect the interpreter's opcode histogram.
    pub stats: bool,
    /// Code cache size of the translator, in bytes.
    pub cache_size: usize,
    /// Entries a block start takes before the translator translates it
    /// (the interpreter runs it until then; 1: at the first entry).
    pub jit_threshold: u32,
    /// Bytes the translator's bounds checks let through on purpose (see
    /// `Jit::set_bounds_slack`); 0 normally.
    pub bounds_slack: u64,
    /// Put the calling thread under the seccomp filter of [`sandbox`] once
    /// the engine is set up, before the program's first instruction (it
    /// stays on for the rest of the thread's life).
    pub seccomp: bool,
    /// How guest threads run, if the program makes any.
    pub threads: ThreadConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            engine: Engine::Interp,
            mem_mib: crate::machine::DEFAULT_MEM_MIB,
            fuel: None,
            stats: false,
            cache_size: crate::jit::DEFAULT_CACHE_SIZE,
            jit_threshold: crate::jit::DEFAULT_THRESHOLD,
            bounds_slack: 0,
            seccomp: false,
            threads: ThreadConfig::default(),
        }
    }
}

/// Everything a run produced.
#[derive(Debug)]
pub struct RunResult {
    pub outcome: Outcome,
    pub machine: Machine,
    pub stats: InterpStats,
    pub jit: Option<JitStats>,
    pub elapsed: Duration,
    /// The thread model's report, if the program used a thread instruction.
    pub threads: Option<ThreadReport>,
}

/// Runs `image` to the end. `trace` (interpreter only) gets one line per
/// retired instruction; `dump_block` (translator only) the translation of
/// the block at that guest pc.
pub fn run_image(
    image: &Image,
    cfg: &RunConfig,
    trace: Option<&mut dyn std::io::Write>,
    dump_block: Option<(u64, &mut dyn std::io::Write)>,
    io: &mut dyn SysIo,
) -> Result<RunResult, LoadError> {
    let mut m = Machine::new(image, cfg.mem_mib)?;
    let mut st = InterpStats::default();
    let start = Instant::now();
    let fuel = cfg.fuel.unwrap_or(u64::MAX);
    let mut engine = new_engine(cfg, &m)?;
    if cfg.seccomp && cfg.threads.model != Model::User {
        // The C library sets up its threads' signal handling on the first
        // thread it makes: that first one comes before the filter. And one
        // malloc arena for all: a thread's own arena would read /proc when
        // it shrinks (an openat the filter refuses).
        // SAFETY: mallopt changes a malloc tunable; no thread but this
        // one exists yet.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
        let _ = std::thread::spawn(|| {}).join();
        sandbox::apply_threaded()?;
    } else if cfg.seccomp {
        sandbox::apply()?;
    }
    let outcome = match (&mut engine, cfg.stats, trace) {
        (SliceEngine::Jit(jit), ..) => jit.run(&mut m, io)?,
        (SliceEngine::Interp(i), false, None) => i.run::<false, false>(&mut m, io, fuel, &mut st, &mut std::io::sink()),
        (SliceEngine::Interp(i), true, None) => i.run::<true, false>(&mut m, io, fuel, &mut st, &mut std::io::sink()),
        (SliceEngine::Interp(i), false, Some(t)) => i.run::<false, true>(&mut m, io, fuel, &mut st, t),
        (SliceEngine::Interp(i), true, Some(t)) => i.run::<true, true>(&mut m, io, fuel, &mut st, t),
    };
    // The first thread instruction hands the run to the thread model
    // (the trace and the histogram stop there).
    if outcome == Outcome::ThreadOp {
        let make = |m: &Machine| new_engine(cfg, m);
        let t = &cfg.threads;
        let (outcome, report, machine) = match t.model {
            Model::User => {
                let (o, report) = crate::threads::user::run(&mut engine, &mut m, io, t, fuel)?;
                return finish(o, m, st, engine, start, Some(report), dump_block);
            }
            Model::Kernel => kernel::run(engine, m, io, t, fuel, &make)?,
            Model::Hybrid(k) => hybrid::run(engine, m, io, t, k, fuel, &make)?,
        };
        let (elapsed, threads) = (start.elapsed(), Some(report));
        return Ok(RunResult { outcome, machine, stats: st, jit: None, elapsed, threads });
    }
    finish(outcome, m, st, engine, start, None, dump_block)
}

/// The result of a run on one OS thread (the translator's statistics and
/// `--dump-block` from its engine).
fn finish(
    outcome: Outcome,
    m: Machine,
    st: InterpStats,
    mut engine: SliceEngine,
    start: Instant,
    threads: Option<ThreadReport>,
    dump_block: Option<(u64, &mut dyn std::io::Write)>,
) -> Result<RunResult, LoadError> {
    let elapsed = start.elapsed();
    let jit = match &mut engine {
        SliceEngine::Jit(jit) => {
            if let Some((pc, out)) = dump_block {
                jit.dump_block(&m, pc, out)?;
            }
            Some(jit.stats.clone())
        }
        SliceEngine::Interp(_) => None,
    };
    Ok(RunResult { outcome, machine: m, stats: st, jit, elapsed, threads })
}

/// The engine `cfg` asks for, for machine `m` (the main thread's, or
/// another thread's under `--threads kernel`).
fn new_engine(cfg: &RunConfig, m: &Machine) -> Result<SliceEngine, JitError> {
    let mut engine = if cfg.engine == Engine::Jit {
        let mut jit = Jit::new(m, cfg.cache_size, cfg.fuel)?;
        jit.set_bounds_slack(cfg.bounds_slack);
        jit.set_threshold(cfg.jit_threshold);
        SliceEngine::Jit(Box::new(jit))
    } else {
        SliceEngine::Interp(Interpreter::new(m))
    };
    // (under `kernel` a blocking call blocks only its own OS thread)
    engine.set_defer_blocking(cfg.threads.jacket && cfg.threads.model == Model::User);
    Ok(engine)
}
