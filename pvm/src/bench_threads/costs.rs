//! The textbook table: null fork and signal-wait, in µs per operation,
//! for pvm's thread models and for native threads and processes, beside
//! Anderson et al.'s 1992 figures; and the speedup of a CPU-bound program
//! on two kernel threads.

use super::guest::{self, with_params};
use super::runner::{run_guest, Model};
use super::stats::{median_f64, us};
use super::{native, Sizes, ThreadBenchError};
use crate::run::Engine;

/// The three classes of the 1992 table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    UserLevel,
    KernelLevel,
    Process,
}

impl Class {
    /// Anderson et al. (1992), µs: (null fork, signal-wait).
    pub fn figures_1992(self) -> (f64, f64) {
        match self {
            Class::UserLevel => (34.0, 37.0),
            Class::KernelLevel => (948.0, 441.0),
            Class::Process => (11_300.0, 1_840.0),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::UserLevel => "user-level",
            Class::KernelLevel => "kernel-level",
            Class::Process => "process",
        }
    }
}

/// One row: what it is, its class, and the medians in µs (`None` where
/// the row has no such operation).
#[derive(Clone, Debug)]
pub struct CostRow {
    pub name: String,
    pub class: Class,
    pub null_fork_us: Option<f64>,
    pub signal_wait_us: Option<f64>,
}

/// The CPU-bound program on 1 and on 2 threads of one model and engine.
#[derive(Clone, Debug)]
pub struct SpeedupRow {
    pub model: String,
    pub engine: &'static str,
    /// The items summed (the same on one and two threads).
    pub items: u64,
    pub one_thread_ms: f64,
    pub two_threads_ms: f64,
}

impl SpeedupRow {
    pub fn speedup(&self) -> f64 {
        self.one_thread_ms / self.two_threads_ms.max(1e-9)
    }
}

/// The whole cost table.
#[derive(Clone, Debug)]
pub struct CostTable {
    pub rows: Vec<CostRow>,
    pub speedups: Vec<SpeedupRow>,
}

/// The pvm rows: (label, model, engine).
fn pvm_rows() -> Vec<(String, Model, Engine, Class)> {
    let hybrid = Model::Hybrid { workers: 2, placement: super::runner::Placement::RoundRobin, steal: false };
    let mut v = Vec::new();
    for (model, class) in [(Model::User, Class::UserLevel), (Model::Kernel, Class::KernelLevel)] {
        for engine in [Engine::Interp, Engine::Jit] {
            v.push((format!("pvm {model} ({})", engine.name()), model, engine, class));
        }
    }
    v.push(("pvm hybrid:2 (interp)".into(), hybrid, Engine::Interp, Class::UserLevel));
    v
}

/// µs per operation of a pvm program: its `@us` over `ops`, median of rounds.
fn pvm_op(
    p: guest::GuestProgram,
    param: &str,
    n: u64,
    ops: u64,
    model: Model,
    engine: Engine,
    rounds: u32,
) -> Result<f64, ThreadBenchError> {
    let src = with_params(&p.full_source(), &[(param, n.to_string())])?;
    let want = format!("{} {n} ok\n", p.name);
    let mut per = Vec::new();
    for _ in 0..rounds {
        let r = run_guest(p.name, &src, &want, model, engine, 1)?;
        per.push(r.output.one("us")? as f64 / ops.max(1) as f64);
    }
    Ok(median_f64(&per))
}

fn native_median(
    rounds: u32,
    f: impl Fn() -> Result<std::time::Duration, ThreadBenchError>,
) -> Result<f64, ThreadBenchError> {
    let v: Vec<f64> = (0..rounds).map(|_| f().map(us)).collect::<Result<_, _>>()?;
    Ok(median_f64(&v))
}

/// Milliseconds of parsum over `threads` threads (its `@us`), median.
fn parsum_ms(items: u64, threads: u64, model: Model, engine: Engine, rounds: u32) -> Result<f64, ThreadBenchError> {
    let src = with_params(guest::PARSUM.source, &[("n_items", items.to_string()), ("n_threads", threads.to_string())])?;
    let want = format!("parsum {items} over {threads} = {}\n", guest::parsum_total(items));
    let mut v = Vec::new();
    for _ in 0..rounds {
        v.push(run_guest("parsum", &src, &want, model, engine, 1)?.output.one("us")? as f64 / 1e3);
    }
    Ok(median_f64(&v))
}

/// How many times the interpreter's items the translated and native
/// parsums sum.
const FAST_ITEMS: u64 = 16;

/// The native control: can two host threads run in parallel right now?
fn native_speedup(items: u64, rounds: u32) -> Result<SpeedupRow, ThreadBenchError> {
    let want = guest::parsum_total(items);
    let ms = |t: u64| -> Result<f64, ThreadBenchError> {
        let mut v = Vec::new();
        for _ in 0..rounds {
            let (d, total) = native::parsum(items, t)?;
            if total != want {
                return Err(ThreadBenchError::NativeWrong { got: total, want });
            }
            v.push(d.as_secs_f64() * 1e3);
        }
        Ok(median_f64(&v))
    };
    Ok(SpeedupRow {
        model: "native std::thread".into(),
        engine: "rustc",
        items,
        one_thread_ms: ms(1)?,
        two_threads_ms: ms(2)?,
    })
}

/// Measures the table.
///
/// # Errors
/// If a measurement fails or a guest's output is wrong.
pub fn measure(s: &Sizes, rounds: u32) -> Result<CostTable, ThreadBenchError> {
    let mut rows = Vec::new();
    for (name, model, engine, class) in pvm_rows() {
        let fork = pvm_op(guest::NULL_FORK, "n_forks", s.pvm_forks, s.pvm_forks, model, engine, rounds)?;
        let sw = pvm_op(guest::SIGNAL_WAIT, "n_rounds", s.pvm_rounds_sw, 2 * s.pvm_rounds_sw, model, engine, rounds)?;
        rows.push(CostRow { name, class, null_fork_us: Some(fork), signal_wait_us: Some(sw) });
    }
    rows.push(CostRow {
        name: "native std::thread + futex".into(),
        class: Class::KernelLevel,
        null_fork_us: Some(native_median(rounds, || native::thread_null_fork(s.native_thread_forks))?),
        signal_wait_us: Some(native_median(rounds, || native::futex_signal_wait(s.native_sw))?),
    });
    rows.push(CostRow {
        name: "native std::thread + Mutex/Condvar".into(),
        class: Class::KernelLevel,
        null_fork_us: None,
        signal_wait_us: Some(native_median(rounds, || native::condvar_signal_wait(s.native_sw))?),
    });
    rows.push(CostRow {
        name: "native process (fork+waitpid / pipes)".into(),
        class: Class::Process,
        null_fork_us: Some(native_median(rounds, || native::process_null_fork(s.native_process_forks))?),
        signal_wait_us: Some(native_median(rounds, || native::process_signal_wait(s.pipe_sw))?),
    });
    // The translated and native sums run 15-20x faster than the
    // interpreted one: they get more items, so that starting the threads
    // (and a translator per thread) stays a small part of the run.
    let long = s.parsum_items.saturating_mul(FAST_ITEMS);
    let mut speedups = vec![native_speedup(long, rounds)?];
    for (model, engine) in
        [(Model::Kernel, Engine::Interp), (Model::Kernel, Engine::Jit), (Model::User, Engine::Interp)]
    {
        let items = if engine == Engine::Jit { long } else { s.parsum_items };
        let one = parsum_ms(items, 1, model, engine, rounds)?;
        let two = parsum_ms(items, 2, model, engine, rounds)?;
        speedups.push(SpeedupRow {
            model: model.to_string(),
            engine: engine.name(),
            items,
            one_thread_ms: one,
            two_threads_ms: two,
        });
    }
    Ok(CostTable { rows, speedups })
}

/// The targets of the issue, each with the figure and PASS or MISS.
pub fn targets(t: &CostTable) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    let row = |prefix: &str| t.rows.iter().find(|r| r.name.starts_with(prefix));
    for r in t.rows.iter().filter(|r| r.name.starts_with("pvm user (")) {
        for (op, v) in [("null fork", r.null_fork_us), ("signal-wait", r.signal_wait_us)] {
            if let Some(v) = v {
                out.push((format!("{} {op} < 1 µs", r.name), format!("{v:.3} µs"), v < 1.0));
            }
        }
    }
    if let Some(p) = row("native process").and_then(|r| r.null_fork_us) {
        for r in t.rows.iter().filter(|r| r.name.starts_with("pvm user (")) {
            if let Some(u) = r.null_fork_us {
                let ratio = p / u.max(1e-9);
                out.push((format!("process / {} null fork >= 50x", r.name), format!("{ratio:.0}x"), ratio >= 50.0));
            }
        }
    }
    for s in t.speedups.iter().filter(|s| s.model == "kernel") {
        let x = s.speedup();
        out.push((format!("parsum on 2 kernel threads ({}) ~2x (>= 1.8x)", s.engine), format!("{x:.2}x"), x >= 1.8));
    }
    out
}

/// The measured ratio user : kernel : process (null fork, signal-wait)
/// of the rows named, beside 1992's.
pub fn ratios(t: &CostTable, user: &str, kernel: &str) -> Option<[(f64, f64); 2]> {
    let get = |p: &str| t.rows.iter().find(|r| r.name.starts_with(p));
    let (u, k, p) = (get(user)?, get(kernel)?, get("native process")?);
    let r = |f: fn(&CostRow) -> Option<f64>| -> Option<(f64, f64)> {
        let base = f(u)?.max(1e-9);
        Some((f(k)? / base, f(p)? / base))
    };
    Some([r(|x| x.null_fork_us)?, r(|x| x.signal_wait_us)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, class: Class, f: f64, s: f64) -> CostRow {
        CostRow { name: name.into(), class, null_fork_us: Some(f), signal_wait_us: Some(s) }
    }

    fn table() -> CostTable {
        CostTable {
            rows: vec![
                row("pvm user (interp)", Class::UserLevel, 0.5, 1.5),
                row("pvm kernel (interp)", Class::KernelLevel, 20.0, 6.0),
                row("native process (fork+waitpid / pipes)", Class::Process, 100.0, 15.0),
            ],
            speedups: vec![SpeedupRow {
                model: "kernel".into(),
                engine: "jit",
                items: 1,
                one_thread_ms: 10.0,
                two_threads_ms: 5.5,
            }],
        }
    }

    #[test]
    fn targets_pass_and_miss_on_the_figures() {
        let t = targets(&table());
        let find = |s: &str| t.iter().find(|x| x.0.contains(s)).map(|x| x.2);
        assert_eq!(find("(interp) null fork < 1"), Some(true));
        assert_eq!(find("(interp) signal-wait < 1"), Some(false));
        assert_eq!(find(">= 50x"), Some(true)); // 100 / 0.5 = 200
        assert_eq!(find("2 kernel threads"), Some(true)); // 1.82x
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn ratios_are_relative_to_the_user_level_row() {
        let [fork, sw] = ratios(&table(), "pvm user (interp)", "pvm kernel (interp)").unwrap();
        assert_eq!(fork, (40.0, 200.0));
        assert_eq!(sw, (4.0, 10.0));
        assert!(ratios(&table(), "nothing", "pvm kernel").is_none());
    }

    #[test]
    fn the_1992_figures_are_the_textbooks() {
        assert_eq!(Class::UserLevel.figures_1992(), (34.0, 37.0));
        assert_eq!(Class::KernelLevel.figures_1992(), (948.0, 441.0));
        assert_eq!(Class::Process.figures_1992(), (11_300.0, 1_840.0));
    }
}
