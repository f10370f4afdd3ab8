//! The thread models against each other: properly synchronized programs
//! give one result under every model, placement and engine; a racy counter
//! loses updates in parallel and none with `xadd`; deadlocks trap under
//! every model; code one thread writes reaches another; the kernel model
//! runs under the seccomp filter.

use pvm::image::Image;
use pvm::interp::Outcome;
use pvm::machine::BufferIo;
use pvm::run::{self, Engine, LoadOptions, RunConfig};
use pvm::threads::{Model, ThreadConfig};
use pvm::trap::TrapKind;

const ENGINES: [Engine; 2] = [Engine::Interp, Engine::Jit];

fn models() -> Vec<ThreadConfig> {
    let base = ThreadConfig { quantum: 1000, ..ThreadConfig::default() };
    vec![ThreadConfig { model: Model::User, ..base }, ThreadConfig { model: Model::Kernel, ..base }]
}

fn builtin(name: &str) -> Image {
    let p = pvm::programs::find(name).expect("a built-in program");
    run::build(p.name, p.kind, p.source.as_bytes(), LoadOptions::default()).unwrap()
}

fn build(src: &str) -> Image {
    run::build("t.pasm", "pasm", src.as_bytes(), LoadOptions::default()).expect("assembles and verifies")
}

fn run_with(image: &Image, engine: Engine, threads: ThreadConfig, fuel: Option<u64>) -> (Outcome, String) {
    let mut io = BufferIo::default();
    let cfg = RunConfig { engine, threads, fuel, ..RunConfig::default() };
    let r = run::run_image(image, &cfg, None, None, &mut io).unwrap();
    (r.outcome, String::from_utf8_lossy(&io.output).into_owned())
}

#[test]
fn synchronized_programs_give_one_result_under_every_model() {
    for (name, want) in [
        ("threads_counter", "40000\n"),
        ("threads_mutex", "8000\n"),
        ("threads_barrier", "240\n"),
        ("threads_prodcons", "500500\n"),
        ("threads_pingpong", "1000 round trips\n"),
        ("threads_nullfork", "1000\n"),
        ("threads_parallel", "10000000\n"),
    ] {
        let image = builtin(name);
        for t in models() {
            for e in ENGINES {
                let got = run_with(&image, e, t, None);
                assert_eq!(got, (Outcome::Exited(0), want.to_string()), "{name} under {:?} on {e:?}", t.model);
            }
        }
    }
}

/// Four threads wait for a start flag, then add 1 to a shared word
/// `rounds` times each, with a plain load-add-store or with `xadd`.
fn counter(rounds: u32, atomic: bool) -> Image {
    let body = if atomic { "xadd r12, [r10], r11\n" } else { "ld64 r12, [r10]\n addi r12, r12, 1\n st64 r12, [r10]\n" };
    build(&format!(
        "main: li r8, 0\n li r2, worker\n li r3, 0x800000\n\
         s: spawn r4, r2, r3\n addi r3, r3, -0x10000\n addi r8, r8, 1\n li r9, 4\n blt r8, r9, s\n\
         li r10, go\n li r11, 1\n xchg r12, [r10], r11\n\
         li r4, 1\n j: join r5, r4\n addi r4, r4, 1\n li r9, 5\n blt r4, r9, j\n\
         li r10, count\n ld64 r1, [r10]\n sys 3\n li r1, 0\n sys 0\n\
         worker: li r13, go\n w: ld64 r14, [r13]\n beqz r14, w\n\
         li r6, {rounds}\n li r10, count\n li r11, 1\n again: {body} addi r6, r6, -1\n bnez r6, again\n texit r6\n\
         .data\n go: .quad 0\n count: .quad 0\n"
    ))
}

#[test]
fn a_racy_counter_loses_updates_in_parallel_and_xadd_loses_none() {
    let rounds = 2_000_000u32;
    let want = 4 * u64::from(rounds);
    let kernel = ThreadConfig { model: Model::Kernel, ..ThreadConfig::default() };
    for e in ENGINES {
        let racy = counter(rounds, false);
        // Lost updates are likely, not certain: a few tries.
        let lost = (0..5).any(|_| {
            let (o, out) = run_with(&racy, e, kernel, None);
            assert_eq!(o, Outcome::Exited(0));
            let n: u64 = out.trim().parse().unwrap();
            assert!(n <= want, "{n}");
            n < want
        });
        assert!(lost, "{e:?}: four threads of plain increments in parallel never lost one in five runs");
        let (o, out) = run_with(&counter(rounds, true), e, kernel, None);
        assert_eq!((o, out), (Outcome::Exited(0), format!("{want}")), "{e:?}");
    }
}

#[test]
fn deadlocks_trap_under_every_model() {
    for name in ["threads_deadlock_join", "threads_deadlock_wait"] {
        let image = builtin(name);
        for t in models() {
            for e in ENGINES {
                let (o, _) = run_with(&image, e, t, None);
                let Outcome::Trapped(trap) = o else { panic!("{name} under {:?}: {o:?}", t.model) };
                assert!(matches!(trap.kind, TrapKind::Deadlock { .. }), "{name}: {trap}");
            }
        }
    }
}

#[test]
fn code_one_thread_writes_reaches_another_thread_running_it() {
    // The spinner runs `li r1, 0` until it becomes `li r1, 1` (the main
    // thread copies the template over it); the fuel ends a run that never
    // sees the store, instead of a hang.
    let image = build(
        "main: li r2, spin\n li r3, 0x800000\n spawn r4, r2, r3\n li r10, 20000\n d: addi r10, r10, -1\n bnez r10, d\n\
         li r11, tmpl\n ld64 r12, [r11]\n li r11, slot\n st64 r12, [r11]\n join r1, r4\n sys 3\n li r1, 0\n sys 0\n\
         spin: li r5, 0\n l: addi r5, r5, 1\n slot: li r1, 0\n beqz r1, l\n texit r1\n\
         tmpl: li r1, 1\n",
    );
    for t in models() {
        for e in ENGINES {
            let got = run_with(&image, e, t, Some(200_000_000));
            assert_eq!(got, (Outcome::Exited(0), "1".to_string()), "{:?} on {e:?}", t.model);
        }
    }
}

#[test]
fn the_kernel_model_runs_under_the_seccomp_filter() {
    let pvm = tests::binary("pvm");
    for engine in ["interp", "jit"] {
        for program in ["threads_mutex", "threads_nullfork", "threads_deadlock_join"] {
            let o = std::process::Command::new(&pvm)
                .args(["run", program, "--threads", "kernel", "--engine", engine])
                .output()
                .unwrap();
            let want = if program.contains("deadlock") { 94 } else { 0 };
            assert_eq!(o.status.code(), Some(want), "{program} on {engine}: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
}
