//! The file server in its three classic shapes under each thread model:
//! throughput and latency.

use super::guest::{self, reply, with_params, GuestProgram};
use super::runner::{run_guest, Model, Placement};
use super::stats::{mean, median_f64, percentile};
use super::workload::{unit, Rng};
use super::{Sizes, ThreadBenchError};
use crate::run::Engine;

/// The fraction of requests the cache serves.
pub const HIT_RATE: f64 = 0.75;

/// One shape under one model.
#[derive(Clone, Debug)]
pub struct ServerRow {
    pub shape: &'static str,
    pub threads: usize,
    pub model: String,
    pub requests: usize,
    pub misses: usize,
    pub throughput: f64,
    pub mean_latency_ms: f64,
    pub p99_latency_ms: f64,
}

/// The three shapes: (name, program, threads it uses besides main).
pub fn shapes(workers: usize) -> [(&'static str, GuestProgram, usize); 3] {
    [
        ("dispatcher/worker", guest::FS_DISPATCH, workers),
        ("single blocking thread", guest::FS_SINGLE, 0),
        ("finite-state machine", guest::FS_FSM, 0),
    ]
}

/// The models the servers run under.
pub fn models() -> [Model; 4] {
    [
        Model::User,
        Model::UserJacket,
        Model::Kernel,
        Model::Hybrid { workers: 2, placement: Placement::RoundRobin, steal: false },
    ]
}

/// Which requests miss the cache (1) and which hit (0), from `seed`.
pub fn request_kinds(n: usize, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| u64::from(unit(&mut rng) >= HIT_RATE)).collect()
}

/// A server's source with the sizes and request list written in, and the
/// output it must give.
pub fn server_source(
    p: GuestProgram,
    s: &Sizes,
    kinds: &[u64],
    workers: usize,
) -> Result<(String, String), ThreadBenchError> {
    guest::check_size("requests", kinds.len(), guest::MAX_REQUESTS)?;
    guest::check_size("workers", workers, guest::MAX_WORKERS)?;
    let list = kinds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    let src = with_params(
        &p.full_source(),
        &[
            ("n_req", kinds.len().to_string()),
            ("disk_us", s.disk_us.to_string()),
            ("work", s.request_work.to_string()),
            ("kinds", list),
        ],
    )?;
    let src =
        if p.name == guest::FS_DISPATCH.name { with_params(&src, &[("n_workers", workers.to_string())])? } else { src };
    let sum: u64 = (0..kinds.len() as u64).map(|i| reply(i, s.request_work)).sum();
    let misses: u64 = kinds.iter().sum();
    Ok((src, format!("served {} requests, {misses} misses, checksum {sum}\n", kinds.len())))
}

/// Measures every shape under every model.
///
/// # Errors
/// If a run fails or a server's output is wrong.
pub fn measure(s: &Sizes, rounds: u32, seed: u64) -> Result<Vec<ServerRow>, ThreadBenchError> {
    let kinds = request_kinds(s.requests, seed);
    let mut rows = Vec::new();
    for (shape, p, threads) in shapes(s.workers) {
        let (src, want) = server_source(p, s, &kinds, s.workers)?;
        for model in models() {
            let (mut tput, mut lat, mut p99) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds {
                let r = run_guest(p.name, &src, &want, model, Engine::Interp, seed)?;
                let span = r.output.one("span")?.max(1) as f64;
                let l: Vec<f64> = r.output.all("lat").iter().map(|&v| v as f64 / 1e3).collect();
                tput.push(kinds.len() as f64 / (span / 1e6));
                lat.push(mean(&l));
                p99.push(percentile(&l, 99.0));
            }
            rows.push(ServerRow {
                shape,
                threads: threads + 1,
                model: model.to_string(),
                requests: kinds.len(),
                misses: kinds.iter().sum::<u64>() as usize,
                throughput: median_f64(&tput),
                mean_latency_ms: median_f64(&lat),
                p99_latency_ms: median_f64(&p99),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_list_is_seeded_and_near_the_hit_rate() {
        let k = request_kinds(2000, 5);
        assert_eq!(k, request_kinds(2000, 5));
        assert_ne!(k, request_kinds(2000, 6));
        let misses = k.iter().sum::<u64>() as f64 / 2000.0;
        assert!((misses - (1.0 - HIT_RATE)).abs() < 0.05, "{misses}");
        assert!(k.iter().all(|&x| x <= 1));
    }

    #[test]
    fn every_shape_gets_the_same_expected_output() {
        let kinds = request_kinds(10, 1);
        let outs: Vec<String> =
            shapes(3).iter().map(|(_, p, _)| server_source(*p, &Sizes::QUICK, &kinds, 3).unwrap().1).collect();
        assert!(outs.windows(2).all(|w| w[0] == w[1]));
        assert!(outs[0].starts_with("served 10 requests, "));
        let too_many = request_kinds(guest::MAX_REQUESTS + 1, 1);
        assert!(server_source(guest::FS_FSM, &Sizes::QUICK, &too_many, 3).is_err());
        assert!(server_source(guest::FS_DISPATCH, &Sizes::QUICK, &kinds, guest::MAX_WORKERS + 1).is_err());
    }
}
