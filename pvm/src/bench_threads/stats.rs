//! Figures over samples: mean and percentiles of latencies, medians of
//! rounds (through [`crate::bench::median`]), the machine's load.

use std::time::Duration;

/// The mean of `v` (0 for none).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The `p`-th percentile (0..=100) of `v` by nearest rank (0 for none).
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return 0.0;
    }
    let rank = ((p.clamp(0.0, 100.0) / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// The median of per-round figures (the upper one of an even count).
pub fn median_f64(v: &[f64]) -> f64 {
    let d: Vec<Duration> = v.iter().map(|&x| Duration::from_secs_f64(x.max(0.0))).collect();
    crate::bench::median(&d).map_or(0.0, |d| d.as_secs_f64())
}

/// Microseconds of a duration, as a float.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The 1-, 5- and 15-minute load averages and the number of CPUs, as one
/// line for the report ("unknown" where /proc says nothing).
pub fn machine_load() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into());
    format!("{cpus} CPUs, load average {load}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank_at_the_edges_and_in_the_middle() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
        assert_eq!(percentile(&[1.0, 2.0], 250.0), 2.0);
    }

    #[test]
    fn mean_and_median_of_rounds() {
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
        assert_eq!(mean(&[]), 0.0);
        assert!((median_f64(&[3.0, 1.0, 2.0]) - 2.0).abs() < 1e-9);
        assert!((median_f64(&[4.0, 1.0]) - 4.0).abs() < 1e-9);
        assert_eq!(median_f64(&[]), 0.0);
    }

    #[test]
    fn the_load_line_names_the_cpus() {
        assert!(machine_load().contains("CPUs, load average"));
    }
}
