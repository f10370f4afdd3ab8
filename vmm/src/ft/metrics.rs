//! Metrics in the Prometheus text exposition format (version 0.0.4) on
//! `--metrics HOST:PORT`: a thread that answers `GET /metrics` with the
//! counters of a run (`vmm run`: exits by kind, checkpoints and their
//! time, rollbacks, watchdog expiries, output held) or of a supervisor
//! (`vmm supervise`: restarts, heartbeat misses, failovers, and its active
//! child's counters as the last heartbeat gave them).
//!
//! [`parse_request`] is pure over untrusted bytes (the fuzz target's
//! entry); the server answers anything else with 400 or 404.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::wire::{Counters, COUNTED_KINDS};
use crate::vcpu::ExitKind;

/// The exit kinds counted, in the order heartbeats carry them.
pub const EXIT_KINDS: [ExitKind; COUNTED_KINDS] = [
    ExitKind::IoIn,
    ExitKind::IoOut,
    ExitKind::MmioRead,
    ExitKind::MmioWrite,
    ExitKind::Hlt,
    ExitKind::Shutdown,
    ExitKind::InternalError,
    ExitKind::FailEntry,
    ExitKind::SystemEvent,
    ExitKind::Other,
];
/// Longest request head read.
const MAX_REQUEST: usize = 8192;

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for metrics on {addr}: give a free HOST:PORT such as 127.0.0.1:9100 (port 0 picks one)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the metrics thread")]
    Thread(#[source] std::io::Error),
}

/// Errors of reading an HTTP request head.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the request head is not complete: no blank line in the first {0} bytes")]
    Incomplete(usize),
    #[error("the request line {0:?} is not METHOD TARGET HTTP/x.y")]
    BadLine(String),
    #[error("the request head is not text")]
    NotText,
}

/// A request line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
}

/// Reads the request line of an HTTP/1.x request head (up to the blank line).
///
/// # Errors
///
/// A head that is incomplete, not text, or whose first line is not a request line.
pub fn parse_request(head: &[u8]) -> Result<Request, RequestError> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| head.windows(2).position(|w| w == b"\n\n"));
    let Some(end) = end else { return Err(RequestError::Incomplete(head.len())) };
    let text = std::str::from_utf8(&head[..end]).map_err(|_| RequestError::NotText)?;
    let line = text.lines().next().unwrap_or("");
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some(method), Some(target), Some(version), None)
            if !method.is_empty()
                && method.bytes().all(|b| b.is_ascii_uppercase())
                && target.starts_with('/')
                && version.starts_with("HTTP/1.") =>
        {
            let path = target.split('?').next().unwrap_or(target).to_string();
            Ok(Request { method: method.to_string(), path })
        }
        _ => Err(RequestError::BadLine(line.chars().take(80).collect())),
    }
}

/// The counters of one `vmm run`, shared by its threads (all relaxed atomics).
#[derive(Debug, Default)]
pub struct RunMetrics {
    exits: [AtomicU64; COUNTED_KINDS],
    pub checkpoints: AtomicU64,
    pub checkpoint_ns: AtomicU64,
    pub checkpoint_last_ns: AtomicU64,
    pub rollbacks: AtomicU64,
    pub watchdog_expiries: AtomicU64,
    pub output_held_bytes: AtomicU64,
    pub output_released_bytes: AtomicU64,
    pub output_delay_max_ns: AtomicU64,
}

impl RunMetrics {
    /// Counts one exit (on the vCPU thread: one relaxed add).
    pub fn exit(&self, kind: ExitKind) {
        if let Some(i) = EXIT_KINDS.iter().position(|k| *k == kind) {
            self.exits[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one checkpoint that took `took`.
    pub fn checkpoint(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.checkpoint_ns.fetch_add(ns, Ordering::Relaxed);
        self.checkpoint_last_ns.store(ns, Ordering::Relaxed);
    }

    /// What a heartbeat carries.
    pub fn counters(&self) -> Counters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            exits: std::array::from_fn(|i| get(&self.exits[i])),
            checkpoints: get(&self.checkpoints),
            checkpoint_ns: get(&self.checkpoint_ns),
            rollbacks: get(&self.rollbacks),
            watchdog_expiries: get(&self.watchdog_expiries),
        }
    }

    /// The metrics page.
    pub fn render(&self) -> String {
        let mut page = String::new();
        render_counters(&mut page, "vmm", &self.counters());
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let ns = |a: &AtomicU64| get(a) as f64 / 1e9;
        gauge(
            &mut page,
            "vmm_checkpoint_last_seconds",
            "Time the latest checkpoint took.",
            ns(&self.checkpoint_last_ns),
        );
        gauge(
            &mut page,
            "vmm_output_held_bytes",
            "Serial output held until the next checkpoint.",
            get(&self.output_held_bytes) as f64,
        );
        counter(
            &mut page,
            "vmm_output_released_bytes_total",
            "Serial output released.",
            get(&self.output_released_bytes),
        );
        gauge(
            &mut page,
            "vmm_output_delay_max_seconds",
            "Longest a released byte was held.",
            ns(&self.output_delay_max_ns),
        );
        page
    }
}

/// The counters of one `vmm supervise`.
#[derive(Debug, Default)]
pub struct SupervisorMetrics {
    pub restarts: AtomicU64,
    pub failures: AtomicU64,
    pub heartbeats: AtomicU64,
    pub heartbeat_misses: AtomicU64,
    pub failovers_warm: AtomicU64,
    pub failovers_cold: AtomicU64,
    pub detection_last_ns: AtomicU64,
    pub failover_last_ns: AtomicU64,
    pub commits: AtomicU64,
    child: std::sync::Mutex<Counters>,
}

impl SupervisorMetrics {
    /// Keeps the active child's counters from its heartbeat.
    pub fn child(&self, counters: Counters) {
        if let Ok(mut c) = self.child.lock() {
            *c = counters;
        }
    }

    /// The metrics page.
    pub fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut page = String::new();
        counter(
            &mut page,
            "vmm_supervisor_restarts_total",
            "Restarts of the guest after a failure.",
            get(&self.restarts),
        );
        counter(&mut page, "vmm_supervisor_failures_total", "Failures declared.", get(&self.failures));
        counter(&mut page, "vmm_supervisor_heartbeats_total", "Heartbeats received.", get(&self.heartbeats));
        counter(
            &mut page,
            "vmm_supervisor_heartbeat_misses_total",
            "Heartbeat periods that passed without one.",
            get(&self.heartbeat_misses),
        );
        let _ =
            writeln!(page, "# HELP vmm_supervisor_failovers_total Guests running again after a failure, by standby.");
        let _ = writeln!(page, "# TYPE vmm_supervisor_failovers_total counter");
        let _ = writeln!(page, "vmm_supervisor_failovers_total{{standby=\"cold\"}} {}", get(&self.failovers_cold));
        let _ = writeln!(page, "vmm_supervisor_failovers_total{{standby=\"warm\"}} {}", get(&self.failovers_warm));
        counter(
            &mut page,
            "vmm_supervisor_commits_total",
            "Checkpoints committed by the children.",
            get(&self.commits),
        );
        let secs = |a: &AtomicU64| get(a) as f64 / 1e9;
        gauge(
            &mut page,
            "vmm_supervisor_detection_last_seconds",
            "From the failure to its declaration, last time it was known.",
            secs(&self.detection_last_ns),
        );
        gauge(
            &mut page,
            "vmm_supervisor_failover_last_seconds",
            "From the restart decision to the guest running, last failover.",
            secs(&self.failover_last_ns),
        );
        let child = self.child.lock().map(|c| *c).unwrap_or_default();
        render_counters(&mut page, "vmm_child", &child);
        page
    }
}

fn counter(page: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(page, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
}

fn gauge(page: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(page, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

fn render_counters(page: &mut String, prefix: &str, c: &Counters) {
    let _ = writeln!(page, "# HELP {prefix}_exits_total Exits handled by the VMM, by kind.");
    let _ = writeln!(page, "# TYPE {prefix}_exits_total counter");
    for (kind, n) in EXIT_KINDS.iter().zip(c.exits) {
        let _ = writeln!(page, "{prefix}_exits_total{{kind=\"{}\"}} {n}", kind.name());
    }
    counter(page, &format!("{prefix}_checkpoints_total"), "Checkpoints taken.", c.checkpoints);
    let seconds = c.checkpoint_ns as f64 / 1e9;
    let _ = writeln!(page, "# HELP {prefix}_checkpoint_seconds_total Time spent taking checkpoints.");
    let _ =
        writeln!(page, "# TYPE {prefix}_checkpoint_seconds_total counter\n{prefix}_checkpoint_seconds_total {seconds}");
    counter(page, &format!("{prefix}_rollbacks_total"), "Rollbacks to a checkpoint.", c.rollbacks);
    counter(page, &format!("{prefix}_watchdog_expiries_total"), "IB700 watchdog expiries.", c.watchdog_expiries);
}

/// A running metrics endpoint; dropping it stops the thread.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` and answers `GET /metrics` with `render()`.
    ///
    /// # Errors
    ///
    /// The address cannot be bound, or the thread cannot start.
    pub fn start(addr: &str, render: Arc<dyn Fn() -> String + Send + Sync>) -> Result<Self, MetricsError> {
        let listener = TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr: addr.into(), source })?;
        let local = listener.local_addr().map_err(|source| MetricsError::Bind { addr: addr.into(), source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(conn) = conn {
                        answer(conn, &*render);
                    }
                }
            })
            .map_err(MetricsError::Thread)?;
        Ok(MetricsServer { addr: local, stop, thread: Some(thread) })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept; a failed connect means the thread is gone already.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut conn: TcpStream, render: &dyn Fn() -> String) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < MAX_REQUEST && parse_request(&head) == Err(RequestError::Incomplete(head.len())) {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let (status, body) = match parse_request(&head) {
        Ok(r) if r.method == "GET" && r.path == "/metrics" => ("200 OK", render()),
        Ok(r) if r.method == "GET" => ("404 Not Found", format!("no page {}: the metrics are at /metrics\n", r.path)),
        Ok(r) => ("405 Method Not Allowed", format!("{} is not supported: use GET /metrics\n", r.method)),
        Err(e) => ("400 Bad Request", format!("{e}\n")),
    };
    let _ = write!(
        conn,
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_read_and_bad_heads_named() {
        let r = parse_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/metrics"));
        assert_eq!(parse_request(b"GET /metrics HTTP/1.0\n\n").unwrap().path, "/metrics");
        assert_eq!(parse_request(b"GET /metrics HTTP/1.1\r\n"), Err(RequestError::Incomplete(23)));
        assert!(matches!(parse_request(b"get / HTTP/1.1\r\n\r\n"), Err(RequestError::BadLine(_))));
        assert!(matches!(parse_request(b"GET metrics HTTP/1.1\r\n\r\n"), Err(RequestError::BadLine(_))));
        assert!(matches!(parse_request(b"GET / HTTP/2 x\r\n\r\n"), Err(RequestError::BadLine(_))));
        assert_eq!(parse_request(b"\xff\xfe\r\n\r\n"), Err(RequestError::NotText));
    }

    #[test]
    fn the_page_is_prometheus_text_with_every_exit_kind() {
        let m = RunMetrics::default();
        m.exit(ExitKind::IoOut);
        m.exit(ExitKind::IoOut);
        m.checkpoint(Duration::from_millis(2));
        let page = m.render();
        assert!(page.contains("# TYPE vmm_exits_total counter\n"), "{page}");
        assert!(page.contains("vmm_exits_total{kind=\"io-out\"} 2\n"), "{page}");
        assert!(page.contains("vmm_exits_total{kind=\"hlt\"} 0\n"), "{page}");
        assert!(page.contains("vmm_checkpoints_total 1\n") && page.contains("vmm_checkpoint_seconds_total 0.002\n"));
        // Every sample line is NAME{labels} VALUE with a known metric.
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let metric = name.split('{').next().unwrap();
            assert!(page.contains(&format!("# TYPE {metric} ")), "{line}");
        }
        let s = SupervisorMetrics::default();
        s.child(m.counters());
        assert!(s.render().contains("vmm_child_exits_total{kind=\"io-out\"} 2\n"));
    }

    #[test]
    fn the_server_answers_get_metrics_and_refuses_the_rest() {
        let server = MetricsServer::start("127.0.0.1:0", Arc::new(|| "up 1\n".to_string())).unwrap();
        let ask = |request: &[u8]| {
            let mut c = TcpStream::connect(server.local_addr()).unwrap();
            c.write_all(request).unwrap();
            let mut reply = String::new();
            c.read_to_string(&mut reply).unwrap();
            reply
        };
        let ok = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.0 200 OK\r\n") && ok.ends_with("\r\n\r\nup 1\n"), "{ok}");
        assert!(ask(b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.0 404"));
        assert!(ask(b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.0 405"));
        assert!(ask(b"hello\r\n\r\n").starts_with("HTTP/1.0 400"));
        drop(server);
    }
}
