//! The report of `pvm bench threads`: Markdown tables and JSON.

use std::io::{self, Write};

use super::balance::BalanceRow;
use super::costs::{self, CostTable};
use super::servers::ServerRow;
use super::{ThreadReport, ThreadsArgs};
use crate::bench::json_str as q;

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.prec$}"))
}

/// The cost table, its ratios, the speedups and the targets.
pub fn render_costs(out: &mut dyn Write, t: &CostTable) -> io::Result<()> {
    writeln!(out, "## Thread and process costs (µs per operation; 1992: Anderson et al., FastThreads / Topaz threads / Ultrix processes)\n")?;
    writeln!(out, "| row | class | null fork (µs) | 1992 | ours/1992 | signal-wait (µs) | 1992 | ours/1992 |")?;
    writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|")?;
    for r in &t.rows {
        let (f92, s92) = r.class.figures_1992();
        let rel = |v: Option<f64>, base: f64| v.map_or("-".into(), |v| format!("{:.4}", v / base));
        writeln!(
            out,
            "| {} | {} | {} | {f92:.0} | {} | {} | {s92:.0} | {} |",
            r.name,
            r.class.name(),
            opt(r.null_fork_us, 3),
            rel(r.null_fork_us, f92),
            opt(r.signal_wait_us, 3),
            rel(r.signal_wait_us, s92)
        )?;
    }
    writeln!(out, "\nuser : kernel : process (1992: null fork 1 : 28 : 332, signal-wait 1 : 12 : 50):")?;
    for engine in ["interp", "jit"] {
        let (u, k) = (format!("pvm user ({engine})"), format!("pvm kernel ({engine})"));
        if let Some([f, s]) = costs::ratios(t, &u, &k) {
            writeln!(
                out,
                "- pvm user : pvm kernel : native process ({engine}): null fork 1 : {:.0} : {:.0}, signal-wait 1 : {:.1} : {:.1}",
                f.0, f.1, s.0, s.1
            )?;
        }
    }
    writeln!(out, "\n## CPU-bound parsum on 1 and 2 threads\n")?;
    writeln!(out, "| model | engine | items | 1 thread (ms) | 2 threads (ms) | speedup |")?;
    writeln!(out, "|---|---|---:|---:|---:|---:|")?;
    for s in &t.speedups {
        writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.1} | {:.2}x |",
            s.model,
            s.engine,
            s.items,
            s.one_thread_ms,
            s.two_threads_ms,
            s.speedup()
        )?;
    }
    writeln!(out, "\ntargets:")?;
    for (what, got, pass) in costs::targets(t) {
        writeln!(out, "- {what}: {got} {}", if pass { "PASS" } else { "MISS" })?;
    }
    Ok(())
}

/// The server table.
pub fn render_servers(out: &mut dyn Write, rows: &[ServerRow]) -> io::Result<()> {
    let Some(first) = rows.first() else { return Ok(()) };
    writeln!(
        out,
        "\n## File server: {} requests, {} misses (blocking disk reads), all arriving at the start (interpreter)\n",
        first.requests, first.misses
    )?;
    writeln!(
        out,
        "| shape | threads | model | throughput (req/s) | vs single thread | mean latency (ms) | p99 latency (ms) |"
    )?;
    writeln!(out, "|---|---:|---|---:|---:|---:|---:|")?;
    for r in rows {
        // Against the single blocking thread under the same model.
        let single = rows.iter().find(|x| x.threads == 1 && x.model == r.model && x.shape.starts_with("single"));
        let rel = single.map_or("-".into(), |x| format!("{:.1}x", r.throughput / x.throughput.max(1e-9)));
        writeln!(
            out,
            "| {} | {} | {} | {:.0} | {rel} | {:.2} | {:.2} |",
            r.shape, r.threads, r.model, r.throughput, r.mean_latency_ms, r.p99_latency_ms
        )?;
    }
    Ok(())
}

/// The load-balancing table.
pub fn render_balance(out: &mut dyn Write, rows: &[BalanceRow]) -> io::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n## Load balancing (hybrid model; 2 cores, so hybrid:4 is oversubscribed; interpreter)\n")?;
    writeln!(out, "| workload | workers | placement | makespan (ms) | mean wait (ms) | steals |")?;
    writeln!(out, "|---|---:|---|---:|---:|---:|")?;
    for r in rows {
        writeln!(
            out,
            "| {} | hybrid:{} | {} | {:.2} | {:.3} | {:.0} |",
            r.workload,
            r.workers,
            r.policy(),
            r.makespan_ms,
            r.mean_wait_ms,
            r.steals
        )?;
    }
    Ok(())
}

/// The whole report.
pub fn render(out: &mut dyn Write, r: &ThreadReport, args: &ThreadsArgs) -> io::Result<()> {
    writeln!(
        out,
        "pvm bench threads{}: medians of {} rounds; machine: {} before, {} after\n",
        if args.quick { " --quick" } else { "" },
        args.rounds.max(1),
        r.load_before,
        r.load_after
    )?;
    if let Some(c) = &r.costs {
        render_costs(out, c)?;
    }
    if let Some(s) = &r.servers {
        render_servers(out, s)?;
    }
    if let Some(b) = &r.balance {
        render_balance(out, b)?;
    }
    Ok(())
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        "null".into()
    }
}

fn num_opt(v: Option<f64>) -> String {
    v.map_or("null".into(), num)
}

/// The figures as JSON, for scripts.
pub fn to_json(r: &ThreadReport) -> String {
    let mut parts = vec![format!("\"load_before\": {}, \"load_after\": {}", q(&r.load_before), q(&r.load_after))];
    if let Some(c) = &r.costs {
        let rows: Vec<String> = c
            .rows
            .iter()
            .map(|x| {
                format!(
                    "{{\"row\": {}, \"class\": \"{}\", \"null_fork_us\": {}, \"signal_wait_us\": {}}}",
                    q(&x.name),
                    x.class.name(),
                    num_opt(x.null_fork_us),
                    num_opt(x.signal_wait_us)
                )
            })
            .collect();
        let sp: Vec<String> = c
            .speedups
            .iter()
            .map(|s| {
                format!(
                    "{{\"model\": {}, \"engine\": \"{}\", \"items\": {}, \"one_thread_ms\": {}, \"two_threads_ms\": {}, \"speedup\": {}}}",
                    q(&s.model),
                    s.engine,
                    s.items,
                    num(s.one_thread_ms),
                    num(s.two_threads_ms),
                    num(s.speedup())
                )
            })
            .collect();
        parts.push(format!("\"costs\": [{}], \"parsum\": [{}]", rows.join(", "), sp.join(", ")));
    }
    if let Some(s) = &r.servers {
        let rows: Vec<String> = s
            .iter()
            .map(|x| {
                format!(
                    "{{\"shape\": \"{}\", \"threads\": {}, \"model\": {}, \"throughput\": {}, \"mean_latency_ms\": {}, \"p99_latency_ms\": {}}}",
                    x.shape,
                    x.threads,
                    q(&x.model),
                    num(x.throughput),
                    num(x.mean_latency_ms),
                    num(x.p99_latency_ms)
                )
            })
            .collect();
        parts.push(format!("\"servers\": [{}]", rows.join(", ")));
    }
    if let Some(b) = &r.balance {
        let rows: Vec<String> = b
            .iter()
            .map(|x| {
                format!(
                    "{{\"workload\": \"{}\", \"workers\": {}, \"policy\": \"{}\", \"makespan_ms\": {}, \"mean_wait_ms\": {}, \"steals\": {}}}",
                    x.workload,
                    x.workers,
                    x.policy(),
                    num(x.makespan_ms),
                    num(x.mean_wait_ms),
                    num(x.steals)
                )
            })
            .collect();
        parts.push(format!("\"balance\": [{}]", rows.join(", ")));
    }
    format!("{{{}}}\n", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_threads::costs::{Class, CostRow, SpeedupRow};
    use crate::bench_threads::runner::Placement;
    use crate::bench_threads::workload::Workload;

    fn report() -> ThreadReport {
        ThreadReport {
            load_before: "2 CPUs, load average 1 1 1".into(),
            load_after: "x".into(),
            costs: Some(CostTable {
                rows: vec![CostRow {
                    name: "pvm user (jit)".into(),
                    class: Class::UserLevel,
                    null_fork_us: Some(0.25),
                    signal_wait_us: None,
                }],
                speedups: vec![SpeedupRow {
                    model: "kernel".into(),
                    engine: "jit",
                    items: 10,
                    one_thread_ms: 9.0,
                    two_threads_ms: 3.0,
                }],
            }),
            servers: Some(vec![ServerRow {
                shape: "finite-state machine",
                threads: 1,
                model: "user".into(),
                requests: 4,
                misses: 1,
                throughput: 1000.0,
                mean_latency_ms: 1.5,
                p99_latency_ms: 2.0,
            }]),
            balance: Some(vec![BalanceRow {
                workload: Workload::Bursty,
                workers: 4,
                placement: Placement::LeastLoaded,
                steal: true,
                makespan_ms: 12.5,
                mean_wait_ms: f64::NAN,
                steals: 3.0,
            }]),
        }
    }

    #[test]
    fn the_tables_show_each_figure_beside_the_1992_one() {
        let args = ThreadsArgs { rounds: 3, quick: true, seed: 1, parts: vec![], json: None, plot: None };
        let mut out = Vec::new();
        render(&mut out, &report(), &args).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("| pvm user (jit) | user-level | 0.250 | 34 | 0.0074 | - | 37 | - |"), "{text}");
        assert!(text.contains("| kernel | jit | 10 | 9.0 | 3.0 | 3.00x |"));
        assert!(text.contains("parsum on 2 kernel threads (jit) ~2x (>= 1.8x): 3.00x PASS"));
        assert!(text.contains("pvm user (jit) null fork < 1 µs: 0.250 µs PASS"));
        assert!(text.contains("| finite-state machine | 1 | user | 1000 | - | 1.50 | 2.00 |"), "{text}");
        assert!(text.contains("| bursty | hybrid:4 | least-loaded +steal | 12.50 | NaN | 3 |"));
        assert!(text.contains("--quick: medians of 3 rounds; machine: 2 CPUs"));
    }

    #[test]
    fn json_has_every_part_and_no_nan() {
        let j = to_json(&report());
        assert!(j.contains("\"null_fork_us\": 0.250000, \"signal_wait_us\": null"));
        assert!(j.contains("\"speedup\": 3.000000"));
        assert!(j.contains("\"shape\": \"finite-state machine\""));
        assert!(j.contains("\"mean_wait_ms\": null"));
        assert!(!j.contains("NaN"));
        assert_eq!(to_json(&ThreadReport::default()), "{\"load_before\": \"\", \"load_after\": \"\"}\n");
    }
}
