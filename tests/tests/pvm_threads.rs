//! Guest threads: every thread instruction's edges on both engines, the
//! user model's determinism (both engines agree to the instruction at
//! every quantum), synchronized programs giving one result whatever the
//! interleaving, a racy counter losing updates, and deadlocks ending in a
//! trap.

use pvm::image::Image;
use pvm::interp::Outcome;
use pvm::machine::BufferIo;
use pvm::run::{self, Engine, LoadOptions, RunConfig};
use pvm::threads::ThreadConfig;
use pvm::trap::{JoinError, TrapKind};
use tests::diff::{agree, run_on};
use tests::{builtin_image, synchronized_thread_programs};

const ENGINES: [Engine; 2] = [Engine::Interp, Engine::Jit];
const QUANTA: [u64; 3] = [1, 7, 1000];

fn build(src: &str) -> Image {
    run::build("t.pasm", "pasm", src.as_bytes(), LoadOptions::default()).expect("assembles and verifies")
}

fn cfg(engine: Engine, quantum: u64) -> RunConfig {
    RunConfig { engine, threads: ThreadConfig { quantum, ..ThreadConfig::default() }, ..RunConfig::default() }
}

/// Runs on `engine` with the default quantum: (outcome, stdout).
fn run(image: &Image, engine: Engine, threads: ThreadConfig) -> (Outcome, String) {
    let mut io = BufferIo::default();
    let r = run::run_image(image, &RunConfig { engine, threads, ..RunConfig::default() }, None, None, &mut io).unwrap();
    (r.outcome, String::from_utf8_lossy(&io.output).into_owned())
}

/// The trap kind of a run on both engines (which must agree on it).
fn trap_of(src: &str, threads: ThreadConfig) -> TrapKind {
    let image = build(src);
    let kinds: Vec<TrapKind> = ENGINES
        .iter()
        .map(|&e| match run(&image, e, threads).0 {
            Outcome::Trapped(t) => t.kind,
            other => panic!("{e:?}: no trap but {other:?} for\n{src}"),
        })
        .collect();
    assert_eq!(kinds[0], kinds[1], "the engines trap differently on\n{src}");
    kinds[0]
}

/// The output of a run on both engines (which must agree), status 0.
fn output_of(src: &str) -> String {
    let image = build(src);
    let runs: Vec<(Outcome, String)> = ENGINES.iter().map(|&e| run(&image, e, ThreadConfig::default())).collect();
    assert_eq!(runs[0], runs[1], "the engines disagree on\n{src}");
    assert_eq!(runs[0].0, Outcome::Exited(0), "{src}: {}", runs[0].1);
    runs[0].1.clone()
}

const PRINT_R1_EXIT: &str = "sys 3\n li r1, 10\n sys 5\n li r1, 0\n sys 0\n";

#[test]
fn cas_swaps_only_when_the_old_value_is_the_expected_one() {
    let src = format!(
        "main: li r10, w\n li r2, 5\n li r3, 9\n cas r2, [r10], r3\n mov r1, r2\n sys 3\n ld64 r1, [r10]\n sys 3\n\
         li r2, 5\n li r3, 11\n cas r2, [r10], r3\n mov r1, r2\n sys 3\n ld64 r1, [r10]\n {PRINT_R1_EXIT}\
         .data\n w: .quad 5\n"
    );
    // success: old 5, now 9; failure: old 9 (not 5), stays 9
    assert_eq!(output_of(&src), "5999\n");
}

#[test]
fn xadd_wraps_and_xchg_swaps() {
    let src = format!(
        "main: li r10, w\n li r3, 2\n xadd r2, [r10], r3\n mov r1, r2\n sys 3\n ld64 r1, [r10]\n sys 3\n\
         li r3, 77\n xchg r2, [r10], r3\n mov r1, r2\n sys 3\n ld64 r1, [r10]\n {PRINT_R1_EXIT}\
         .data\n w: .quad -1\n"
    );
    assert_eq!(output_of(&src), "-11177\n");
}

#[test]
fn misaligned_and_out_of_bounds_atomics_trap_on_both_engines() {
    for op in ["cas", "xadd", "xchg", "wait", "wake"] {
        for (addr, want) in [
            ("w+4", "misaligned"),
            ("w+1", "misaligned"),
            ("0xfffff8", "ok"),
            ("0xfffffc", "oob"),
            ("0x1000000", "oob"),
            ("-8", "oob"),
        ] {
            let src = format!("main: li r10, {addr}\n li r3, 1\n li r2, 0\n {op} r2, [r10], r3\n li r1, 0\n sys 0\n .data\n w: .quad 0, 0\n");
            let image = build(&src);
            for e in ENGINES {
                let (o, _) = run(&image, e, ThreadConfig::default());
                match (want, &o) {
                    ("ok", Outcome::Exited(0)) => {}
                    ("misaligned", Outcome::Trapped(t)) if matches!(t.kind, TrapKind::MisalignedAtomic { .. }) => {
                        assert_eq!((t.pc, t.retired), (0x1000 + 3 * 8, 3), "{op} at {addr} on {e:?}");
                        assert_eq!(t.kind.exit_status(), 91);
                    }
                    ("oob", Outcome::Trapped(t)) if matches!(t.kind, TrapKind::OutOfBounds { size: 8, .. }) => {}
                    _ => panic!("{op} at {addr} on {e:?}: want {want}, got {o:?}"),
                }
            }
        }
    }
}

#[test]
fn atomics_into_code_are_stores_that_rewrite_it() {
    // xchg puts `li r1, 42` over the `li r1, 7` it then runs.
    let src = format!(
        "main: li r10, slot\n li r11, tmpl\n ld64 r3, [r11]\n xchg r2, [r10], r3\n slot: li r1, 7\n {PRINT_R1_EXIT}\
         tmpl: li r1, 42\n"
    );
    assert_eq!(output_of(&src), "42\n");
}

#[test]
fn fence_and_tid_and_the_main_thread_is_zero() {
    let src = format!("main: fence\n tid r1\n {PRINT_R1_EXIT}");
    assert_eq!(output_of(&src), "0\n");
}

#[test]
fn spawn_gives_the_argument_and_stack_and_counts_ids_up() {
    let src = format!(
        "main: li r2, child\n li r3, 0x800000\n spawn r4, r2, r3\n spawn r5, r2, r3\n join r6, r4\n join r7, r5\n\
         mov r1, r4\n sys 3\n mov r1, r5\n sys 3\n mov r1, r7\n {PRINT_R1_EXIT}\
         child: tid r6\n sub r5, r15, r1\n add r6, r6, r5\n add r6, r6, r2\n texit r6\n"
    );
    // ids 1 and 2; thread 2's value: its id + (sp - r1 = 0) + r2 (= 0)
    assert_eq!(output_of(&src), "122\n");
}

#[test]
fn spawn_at_a_non_instruction_traps_at_the_spawn() {
    for target in ["data", "child+4", "0", "0x2000000"] {
        let src = format!(
            "main: li r2, {target}\n li r3, 0x800000\n spawn r4, r2, r3\n li r1, 0\n sys 0\n child: texit r1\n .data\n data: .quad 0\n"
        );
        let kind = trap_of(&src, ThreadConfig::default());
        assert!(matches!(kind, TrapKind::BadJumpTarget(_)), "{target}: {kind:?}");
        assert_eq!(kind.exit_status(), 86);
    }
}

#[test]
fn join_of_itself_an_unknown_id_or_twice_traps() {
    let itself = "main: li r2, 0\n join r3, r2\n li r1, 0\n sys 0\n";
    assert_eq!(trap_of(itself, ThreadConfig::default()), TrapKind::BadJoin { id: 0, why: JoinError::Itself });
    let unknown = "main: li r2, 1\n join r3, r2\n li r1, 0\n sys 0\n";
    assert_eq!(trap_of(unknown, ThreadConfig::default()), TrapKind::BadJoin { id: 1, why: JoinError::Unknown });
    let twice =
        "main: li r2, child\n li r3, 0x800000\n spawn r4, r2, r3\n join r5, r4\n join r5, r4\n li r1, 0\n sys 0\n\
                 child: texit r1\n";
    assert_eq!(trap_of(twice, ThreadConfig::default()), TrapKind::BadJoin { id: 1, why: JoinError::AlreadyJoined });
    // A second joiner while the first still waits is refused too.
    let two_joiners = "main: li r2, child\n li r3, 0x800000\n spawn r4, r2, r3\n li r2, other\n spawn r5, r2, r4\n\
                       yield\n join r6, r4\n li r1, 0\n sys 0\n\
                       child: li r6, 0\n wait r6, [r15-8], r6\n texit r6\n other: join r6, r1\n texit r6\n";
    let k = trap_of(two_joiners, ThreadConfig::default());
    assert_eq!(k, TrapKind::BadJoin { id: 1, why: JoinError::AlreadyJoined });
}

#[test]
fn the_last_texit_gives_the_status_and_sys_exit_from_any_thread_ends_all() {
    let image = build(
        "main: li r2, child\n li r3, 0x800000\n spawn r4, r2, r3\n li r5, 300\n texit r5\n\
         child: li r1, 7\n sys 3\n li r5, 301\n texit r5\n",
    );
    for e in ENGINES {
        // the main thread ends first (status of the last: 301 & 0xff)
        assert_eq!(run(&image, e, ThreadConfig::default()), (Outcome::Exited(45), "7".to_string()), "{e:?}");
    }
    let image = build(
        "main: li r2, child\n li r3, 0x800000\n spawn r4, r2, r3\n join r5, r4\n li r1, 1\n sys 3\n li r1, 0\n sys 0\n\
         child: li r1, 9\n sys 0\n",
    );
    for e in ENGINES {
        assert_eq!(run(&image, e, ThreadConfig::default()), (Outcome::Exited(9), String::new()), "{e:?}");
    }
}

#[test]
fn spawning_past_max_threads_traps_and_ended_threads_do_not_count() {
    let src = "main: li r2, child\n li r3, 0x800000\n spawn r4, r2, r3\n spawn r4, r2, r3\n spawn r4, r2, r3\n\
               li r1, 0\n sys 0\n child: li r6, 0\n wait r6, [r15-8], r6\n texit r6\n";
    let limited = ThreadConfig { max_threads: 3, ..ThreadConfig::default() };
    assert_eq!(trap_of(src, limited), TrapKind::TooManyThreads { max: 3 });
    assert_eq!(TrapKind::TooManyThreads { max: 3 }.exit_status(), 93);
    let roomy = ThreadConfig { max_threads: 4, ..ThreadConfig::default() };
    assert_eq!(run(&build(src), Engine::Interp, roomy).0, Outcome::Exited(0));
    // 2 live at most, 100 threads made in turn.
    let serial = format!(
        "main: li r6, 100\n li r2, child\n li r3, 0x800000\n l: spawn r4, r2, r3\n join r5, r4\n addi r6, r6, -1\n\
         bnez r6, l\n mov r1, r4\n {PRINT_R1_EXIT} child: texit r1\n"
    );
    let two = ThreadConfig { max_threads: 2, ..ThreadConfig::default() };
    for e in ENGINES {
        assert_eq!(run(&build(&serial), e, two), (Outcome::Exited(0), "100\n".to_string()));
    }
}

#[test]
fn wait_returns_at_once_when_the_value_changed_and_wake_counts_the_woken() {
    let src = format!(
        "main: li r10, w\n li r3, 5\n wait r1, [r10], r3\n sys 3\n li r3, -1\n wake r1, [r10], r3\n sys 3\n\
         li r2, child\n li r3, 0x800000\n spawn r4, r2, r3\n spawn r4, r2, r3\n spawn r4, r2, r3\n yield\n\
         li r3, 2\n wake r1, [r10], r3\n sys 3\n li r3, -1\n wake r1, [r10], r3\n {PRINT_R1_EXIT}\
         child: li r10, w\n li r3, 0\n wait r4, [r10], r3\n texit r4\n .data\n w: .quad 0\n"
    );
    // value 0 is not 5: 1 at once; no waiters: 0; three wait, wake 2 then the last 1
    assert_eq!(output_of(&src), "1021\n");
}

#[test]
fn deadlocks_end_in_a_trap_that_names_every_thread() {
    for name in ["threads_deadlock_join", "threads_deadlock_wait"] {
        let image = builtin_image(name);
        for e in ENGINES {
            for q in QUANTA {
                let mut io = BufferIo::default();
                let r = run::run_image(&image, &cfg(e, q), None, None, &mut io).unwrap();
                let Outcome::Trapped(t) = &r.outcome else { panic!("{name}: {:?}", r.outcome) };
                assert!(matches!(t.kind, TrapKind::Deadlock { .. }), "{name}: {t}");
                assert!(t.to_string().contains("deadlock: every thread is waiting"), "{t}");
                let lines = r.threads.expect("a threaded run").deadlock;
                assert!(!lines.is_empty() && lines.iter().all(|l| l.contains(" at pc 0x")), "{lines:?}");
                assert!(lines.iter().any(|l| l.contains("join of thread") || l.contains("wait on 0x")), "{lines:?}");
            }
        }
    }
    let o = tests::pvm(&["run", "threads_deadlock_join"]);
    assert_eq!(o.status, 94);
    assert!(o.stderr.contains("pvm:   thread 0 at pc 0x1018: join of thread 1"), "{}", o.stderr);
    assert!(o.stderr.contains("pvm:   thread 1 at pc 0x1038: join of thread 0"), "{}", o.stderr);
}

#[test]
fn threaded_programs_agree_on_both_engines_at_every_quantum() {
    // (threads_parallel's 50 million instructions, switched after each one, take too long)
    let threaded =
        pvm::programs::PROGRAMS.iter().filter(|p| p.name.starts_with("threads_") && p.name != "threads_parallel");
    for p in threaded {
        let image = builtin_image(p.name);
        for q in QUANTA {
            agree(&format!("{} with quantum {q}", p.name), &image, cfg(Engine::Interp, q), b"");
        }
        // and when the fuel stops them mid-way
        let (full, _) = run_on(&image, cfg(Engine::Interp, 7), b"");
        for fuel in [1, full.retired / 3, full.retired - 1] {
            let c = RunConfig { fuel: Some(fuel), ..cfg(Engine::Interp, 7) };
            agree(&format!("{} with quantum 7, fuel {fuel}", p.name), &image, c, b"");
        }
    }
}

#[test]
fn synchronized_programs_give_one_result_whatever_the_quantum() {
    // (threads_parallel's 10 million instructions at quantum 1 would take long)
    let programs: Vec<_> =
        synchronized_thread_programs().into_iter().filter(|(n, _)| *n != "threads_parallel").collect();
    assert!(programs.len() >= 6, "{programs:?}");
    for (name, want) in programs {
        let image = builtin_image(name);
        for q in [1, 2, 3, 7, 64, 1000, 1 << 40] {
            for e in ENGINES {
                let t = ThreadConfig { quantum: q, ..ThreadConfig::default() };
                assert_eq!(run(&image, e, t), (Outcome::Exited(0), want.to_string()), "{name}, quantum {q}, {e:?}");
            }
        }
    }
}

#[test]
fn a_racy_counter_loses_updates_and_xadd_loses_none() {
    let racy = builtin_image("threads_racy");
    for e in ENGINES {
        // switched after every instruction: deterministically lost
        let t = ThreadConfig { quantum: 1, ..ThreadConfig::default() };
        let (o, out) = run(&racy, e, t);
        assert_eq!(o, Outcome::Exited(0));
        let n: u64 = out.trim().parse().unwrap();
        assert!(n < 40_000, "{e:?}: {n}");
        assert_eq!(out, "10003\n");
        // a quantum longer than a thread's whole loop: nothing interleaves
        let t = ThreadConfig { quantum: 1 << 20, ..ThreadConfig::default() };
        assert_eq!(run(&racy, e, t).1, "40000\n");
    }
}

#[test]
fn the_report_counts_threads_and_their_instructions() {
    let image = builtin_image("threads_counter");
    for e in ENGINES {
        let mut io = BufferIo::default();
        let r = run::run_image(&image, &cfg(e, 1000), None, None, &mut io).unwrap();
        let rep = r.threads.expect("a threaded run");
        assert_eq!(rep.model, "user");
        assert_eq!(rep.threads.len(), 5);
        assert_eq!(rep.threads.iter().map(|t| t.retired).sum::<u64>(), r.machine.retired);
        for t in &rep.threads[1..] {
            // li, li, li, then 10000 rounds of 3, then texit
            assert_eq!(t.retired, 3 + 3 * 10_000 + 1);
            assert!(t.first_run_ns.is_some() && t.end_ns >= t.first_run_ns && t.first_run_ns >= Some(t.spawn_ns));
        }
        assert!(rep.counters.preemptions >= 100 && rep.counters.switches >= rep.counters.preemptions);
        let mut table = Vec::new();
        rep.print(&mut table);
        let table = String::from_utf8(table).unwrap();
        assert!(table.starts_with("threads (user): 5 threads,"), "{table}");
        assert_eq!(table.lines().count(), 2 + 5, "{table}");
    }
    // No thread instruction: no report, and the run is the plain one.
    let r = run::run_image(&builtin_image("fib"), &RunConfig::default(), None, None, &mut BufferIo::default()).unwrap();
    assert!(r.threads.is_none());
}

#[test]
fn time_counts_up_and_sleep_waits() {
    let src = format!(
        "main: sys 8\n mov r5, r0\n li r1, 3000\n sys 7\n mov r6, r0\n sys 8\n sub r1, r0, r5\n sltui r1, r1, 3000\n\
         add r1, r1, r6\n {PRINT_R1_EXIT}"
    );
    // slept at least 3000 µs: not below; sleep returns 0
    assert_eq!(output_of(&src), "0\n");
}

#[test]
fn a_jacketed_sleep_lets_the_other_threads_run() {
    // The child sleeps 30 ms and prints "a"; main, which yields to it
    // first, prints "m". Blocking, the sleep stops main too.
    let src = "main: li r2, child\n li r3, 0x800000\n spawn r4, r2, r3\n yield\n li r1, 109\n sys 5\n join r5, r4\n\
               li r1, 0\n sys 0\n child: li r1, 30000\n sys 7\n li r1, 97\n sys 5\n texit r0\n";
    let image = build(src);
    for e in ENGINES {
        assert_eq!(run(&image, e, ThreadConfig::default()).1, "am", "{e:?}");
        let jacket = ThreadConfig { jacket: true, ..ThreadConfig::default() };
        assert_eq!(run(&image, e, jacket).1, "ma", "{e:?}");
    }
}

/// `sys 7` with r1 = 2^64 - 1 µs (585,000 years): the jacketed sleeper
/// parks until a deadline the clock can hold, and main, which does not
/// wait for it, exits at once.
#[test]
fn a_jacketed_sleep_for_ever_does_not_hold_up_an_exit() {
    let src = "main: li r2, child\n li r3, 0x800000\n spawn r4, r2, r3\n yield\n li r1, 109\n sys 5\n\
               li r1, 3\n sys 0\n child: li r1, -1\n sys 7\n li r1, 97\n sys 5\n texit r0\n";
    let image = build(src);
    for e in ENGINES {
        let jacket = ThreadConfig { jacket: true, ..ThreadConfig::default() };
        let started = std::time::Instant::now();
        assert_eq!(run(&image, e, jacket), (Outcome::Exited(3), "m".to_string()), "{e:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{e:?}: main waited for the sleeper");
    }
}

#[test]
fn a_jacketed_read_reads_the_input() {
    let src = "main: li r1, buf\n li r2, 8\n sys 2\n mov r1, r0\n sys 3\n li r1, buf\n li r2, 3\n sys 1\n li r1, 0\n\
               sys 0\n .data\n buf: .quad 0\n";
    let image = build(src);
    for e in ENGINES {
        let jacket = ThreadConfig { jacket: true, ..ThreadConfig::default() };
        let mut io = BufferIo { input: b"hey".to_vec(), ..Default::default() };
        let c = RunConfig { engine: e, threads: jacket, ..RunConfig::default() };
        let r = run::run_image(&image, &c, None, None, &mut io).unwrap();
        assert_eq!((r.outcome, io.output), (Outcome::Exited(0), b"3hey".to_vec()), "{e:?}");
    }
}

#[test]
fn threaded_programs_run_under_the_seccomp_filter() {
    let pvm = tests::binary("pvm");
    for args in [&["threads_mutex"][..], &["threads_pingpong", "--engine", "jit", "--jacket"]] {
        let o = std::process::Command::new(&pvm).arg("run").args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let sleepy = tests::temp_path("sleepy.pasm");
    std::fs::write(&sleepy, "main: li r1, 1000\n sys 7\n sys 8\n li r1, 0\n sys 0\n").unwrap();
    let o = std::process::Command::new(&pvm).arg("run").arg(&sleepy).output().unwrap();
    assert!(o.status.success(), "sleep under the filter: {}", String::from_utf8_lossy(&o.stderr));
}
