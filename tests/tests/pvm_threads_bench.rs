//! `pvm bench threads`: its guest programs run on both engines under every
//! thread model and give the output written in them; `--quick` produces
//! every row with positive, finite figures. No timing is asserted.

use pvm::bench_threads::guest::{self, split_output};
use pvm::bench_threads::runner::{run_guest, Model, Placement};
use pvm::bench_threads::{self as bt, ThreadsArgs};
use pvm::run::Engine;

fn models() -> Vec<Model> {
    vec![
        Model::User,
        Model::UserJacket,
        Model::Kernel,
        Model::Hybrid { workers: 2, placement: Placement::RoundRobin, steal: false },
        Model::Hybrid { workers: 3, placement: Placement::Random, steal: true },
        Model::Hybrid { workers: 2, placement: Placement::LeastLoaded, steal: true },
    ]
}

#[test]
fn every_guest_program_gives_its_expected_output_on_both_engines_under_every_model() {
    for p in guest::ALL {
        let want = p.expected_stdout();
        for model in models() {
            for engine in [Engine::Interp, Engine::Jit] {
                let r = run_guest(p.name, &p.full_source(), &want, model, engine, 7)
                    .unwrap_or_else(|e| panic!("{} under {model} on {}: {e}", p.name, engine.name()));
                assert!(!r.output.timings.is_empty(), "{}: it prints its timings", p.name);
            }
        }
    }
}

#[test]
fn the_file_servers_print_one_latency_per_request_and_a_span_at_least_as_long() {
    for p in [guest::FS_DISPATCH, guest::FS_SINGLE, guest::FS_FSM] {
        let r = run_guest(p.name, &p.full_source(), &p.expected_stdout(), Model::Kernel, Engine::Interp, 1).unwrap();
        let lat = r.output.all("lat");
        assert_eq!(lat.len(), 8, "{}", p.name);
        let span = r.output.one("span").unwrap();
        assert_eq!(lat.iter().max(), Some(&span), "{}: the span ends at the last completion", p.name);
        // Three misses of 1000 µs each: even overlapped, one whole disk read.
        assert!(span >= 1000, "{}: span {span}", p.name);
    }
}

#[test]
fn the_single_threaded_server_is_a_serial_chain_of_its_misses() {
    // The semantics, not the speed: three blocking 1000 µs reads in a row.
    let p = guest::FS_SINGLE;
    let r = run_guest(p.name, &p.full_source(), &p.expected_stdout(), Model::User, Engine::Jit, 1).unwrap();
    assert!(r.output.one("span").unwrap() >= 3000);
}

#[test]
fn a_wrong_expectation_is_an_error_not_a_figure() {
    let p = guest::NULL_FORK;
    let e = run_guest(p.name, p.source, "nullfork 999 ok\n", Model::User, Engine::Interp, 1).unwrap_err();
    assert!(e.to_string().contains("want status 0 and \"nullfork 999 ok\\n\""), "{e}");
    assert!(split_output("@us 1\n").is_ok());
}

fn positive(what: &str, v: f64) {
    assert!(v.is_finite() && v > 0.0, "{what}: {v}");
}

#[test]
fn bench_threads_quick_produces_every_row_with_positive_finite_figures() {
    let args = ThreadsArgs { rounds: 1, quick: true, seed: 3, parts: vec![], json: None, plot: None };
    let report = bt::run(&args).unwrap_or_else(|e| panic!("{e}"));
    let costs = report.costs.as_ref().expect("cost table");
    let names: Vec<&str> = costs.rows.iter().map(|r| r.name.as_str()).collect();
    for want in [
        "pvm user (interp)",
        "pvm user (jit)",
        "pvm kernel (interp)",
        "pvm kernel (jit)",
        "pvm hybrid:2 (interp)",
        "native std::thread + futex",
        "native std::thread + Mutex/Condvar",
        "native process (fork+waitpid / pipes)",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for r in &costs.rows {
        r.null_fork_us.into_iter().for_each(|v| positive(&r.name, v));
        positive(&r.name, r.signal_wait_us.unwrap_or(0.0));
    }
    assert_eq!(costs.speedups.len(), 4, "native control, kernel on both engines, user");
    costs.speedups.iter().for_each(|s| positive(&s.model, s.speedup()));
    let servers = report.servers.as_ref().expect("server table");
    assert_eq!(servers.len(), 3 * 4, "three shapes under four models");
    for s in servers {
        positive(s.shape, s.throughput);
        positive(s.shape, s.mean_latency_ms);
        positive(s.shape, s.p99_latency_ms);
    }
    let balance = report.balance.as_ref().expect("balance table");
    assert_eq!(balance.len(), 3 * 2 * 3 * 2, "workloads x K x placements x steal");
    balance.iter().for_each(|b| positive(&b.policy(), b.makespan_ms));
    assert!(balance.iter().all(|b| b.mean_wait_ms.is_finite() && b.mean_wait_ms >= 0.0));
    assert!(balance.iter().filter(|b| !b.steal).all(|b| b.steals == 0.0), "no steals without --steal");
    let mut out = Vec::new();
    bt::render::render(&mut out, &report, &args).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("targets:") && text.contains("| heavy-tailed | hybrid:4 |"), "{text}");
    assert!(bt::balance::svg(balance).starts_with("<svg"));
}

#[test]
fn the_command_line_takes_bench_threads_and_its_options() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = pvm::machine::BufferIo::default();
    let status = pvm::cli::main_with(
        &["bench", "threads", "--quick", "--parts", "servers", "--rounds", "1"],
        &mut io,
        &mut out,
        &mut err,
    );
    assert_eq!(status, 0, "{}", String::from_utf8_lossy(&err));
    assert!(String::from_utf8_lossy(&out).starts_with("pvm bench threads --quick: medians of 1 rounds; machine: "));
    for bad in [&["bench", "threads", "--rounds", "x"][..], &["bench", "threads", "--parts", "nothing"]] {
        assert_eq!(pvm::cli::main_with(bad, &mut io, &mut out, &mut err), pvm::cli::STATUS_USAGE, "{bad:?}");
    }
}
