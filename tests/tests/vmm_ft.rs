//! Fault detection and recovery with the real `vmm` binary: the IB700
//! watchdog and each `--watchdog-action`; `--inject-fault` specs and their
//! dependence on the attempt; rollback to in-memory checkpoints with
//! output commit (a numbered sequence printed exactly once, in order,
//! across injected failures); `vmm supervise` detecting a killed, a
//! stopped and a hung VMM and a hung guest, spacing its restarts by each
//! backoff policy, failing over to cold and warm standbys, giving up with
//! a clear error; Prometheus metrics scraped from a run and a supervisor.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tests::{binary, kvm_available, temp_path, Outcome};
use vmm::ft::jsonlog::field;

/// Runs `vmm args`, killed after `limit` so that a broken recovery fails the test instead of hanging it.
fn vmm(args: &[&str], limit: Duration) -> Outcome {
    let mut child = Command::new(binary("vmm"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vmm");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let until = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for vmm") {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vmm {args:?} still ran after {limit:?}; its stderr: {}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome { status: status.code().unwrap_or(-1), stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

const LIMIT: Duration = Duration::from_secs(60);

/// One test at a time: their guests spin, and a supervisor's heartbeat time-out is a guess that a
/// loaded machine proves wrong (the false-positive table in docs/benchmarks.md).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The numbers of `count`'s lines, in the order shown.
fn numbers(stdout: &str) -> Vec<u64> {
    stdout.lines().filter_map(|l| l.strip_prefix("count ").and_then(|v| v.parse().ok())).collect()
}

fn count_once_each(o: &Outcome, n: u64) {
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert_eq!(numbers(&o.stdout), (1..=n).collect::<Vec<_>>(), "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    assert!(o.stdout.ends_with("count: done\n"), "{}", o.stdout);
}

#[test]
fn the_ib700_expiry_does_what_watchdog_action_says() {
    if !kvm_available() {
        return;
    }
    let _one = exclusive();
    // Two pets, then no more: the 2 s timeout (value 14, QEMU's table) expires.
    let run = |action: &'static str, extra: &'static [&'static str]| {
        std::thread::spawn(move || {
            let base = ["run", "ib700", "--cmdline", "pets=3 hang=2 every=200", "--watchdog-action", action];
            vmm(&[&base[..], extra].concat(), LIMIT)
        })
    };
    let shutdown = run("shutdown", &[]);
    let none = run("none", &["--timeout", "4"]);
    let pause = run("pause", &["--timeout", "4"]);
    let reset = run("reset", &["--max-restarts", "1", "--timeout", "10"]);
    let rollback = run("rollback", &["--checkpoint-every", "50", "--max-restarts", "1", "--timeout", "10"]);
    let expired = "the IB700 watchdog expired: the guest last petted it";

    let o = shutdown.join().unwrap();
    assert_eq!(o.status, 83, "{}", o.stderr);
    assert!(o.stderr.contains(expired) && o.stderr.contains("with a 2 s timeout"), "{}", o.stderr);
    assert!(o.stdout.contains("ib700: pet 2\n") && !o.stdout.contains("pet 3"), "{}", o.stdout);

    let o = none.join().unwrap();
    assert_eq!(o.status, 76, "none lets the guest run on until --timeout: {}", o.stderr);
    assert!(o.stderr.contains("--watchdog-action none"), "{}", o.stderr);

    let o = pause.join().unwrap();
    assert_eq!(o.status, 76, "{}", o.stderr);
    assert!(o.stderr.contains("paused by the watchdog"), "{}", o.stderr);

    // Reset starts the guest again from its boot, once; the second expiry ends the run.
    let o = reset.join().unwrap();
    assert_eq!(o.status, 83, "{}", o.stderr);
    assert_eq!(o.stdout.matches("ib700: petting the watchdog").count(), 2, "{}", o.stdout);
    assert!(o.stderr.contains("rollback 1 of at most 1") && o.stderr.contains("giving up after 1 rollbacks"));

    // Rollback goes back to the latest checkpoint (the guest already spinning): no line twice.
    let o = rollback.join().unwrap();
    assert_eq!(o.status, 83, "{}", o.stderr);
    assert_eq!(o.stdout.matches("ib700: pet 2\n").count(), 1, "{}", o.stdout);
    assert_eq!(o.stderr.matches(expired).count(), 3, "two reports and the final error: {}", o.stderr);
}

#[test]
fn a_guest_that_keeps_petting_is_left_alone_and_stopping_the_watchdog_disarms_it() {
    if !kvm_available() {
        return;
    }
    let _one = exclusive();
    // Five pets some 0.2 s apart with a 2 s timeout, then a write to 0x441 and a clean exit.
    let o = vmm(&["run", "ib700", "--cmdline", "pets=5 every=30000", "--watchdog-action", "shutdown"], LIMIT);
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(!o.stderr.contains("expired"), "{}", o.stderr);
    assert!(o.stdout.contains("ib700: pet 5\n"), "{}", o.stdout);
}

#[test]
fn injected_faults_follow_their_spec_and_a_retry_succeeds() {
    if !kvm_available() {
        return;
    }
    let _one = exclusive();
    let count = ["run", "count", "--cmdline", "n=5 work=100"];
    let with = |extra: &[&str]| vmm(&[&count[..], extra].concat(), LIMIT);

    let o = with(&["--inject-fault", "shutdown-after-exits=40"]);
    assert_eq!(o.status, 73, "a triple fault, with --on-failure stop: {}", o.stderr);
    assert!(o.stderr.contains("injected by --inject-fault"), "{}", o.stderr);

    let o = with(&["--inject-fault", "kill-vcpu-after-exits=40"]);
    assert_eq!(o.status, 84, "{}", o.stderr);
    assert!(o.stderr.contains("the vCPU thread died at exit 40"), "{}", o.stderr);

    // The fault strikes attempt 0 only: the rollback's attempt 1 gets through.
    let o = with(&["--inject-fault", "shutdown-after-exits=40", "--checkpoint-every", "5", "--on-failure", "rollback"]);
    count_once_each(&o, 5);
    assert_eq!(o.stderr.matches("vmm: rollback ").count(), 1, "{}", o.stderr);

    // attempts=all: every attempt fails, and --max-restarts ends it.
    let spec = "kill-vcpu-after-exits=40,attempts=all";
    let o = with(&["--inject-fault", spec, "--on-failure", "rollback", "--max-restarts", "2"]);
    assert_eq!(o.status, 84, "{}", o.stderr);
    assert!(o.stderr.contains("giving up after 2 rollbacks (--max-restarts 2)"), "{}", o.stderr);

    // A random fault depends on its seed and the attempt only: the same run fails at the same exit.
    let first = with(&["--inject-fault", "random=0.02,seed=7"]);
    let again = with(&["--inject-fault", "random=0.02,seed=7"]);
    let at = |o: &Outcome| o.stderr.lines().find(|l| l.contains("injected")).map(str::to_string);
    assert!(at(&first).is_some(), "{}", first.stderr);
    assert_eq!(at(&first), at(&again));

    let o = with(&["--inject-fault", "explode=1"]);
    assert_eq!(o.status, 2, "{}", o.stderr);
    assert!(o.stderr.contains("\"explode\" is not a kind of fault"), "{}", o.stderr);
}

#[test]
fn a_numbered_sequence_survives_rollbacks_exactly_once_in_order() {
    if !kvm_available() {
        return;
    }
    let _one = exclusive();
    let mut failures = 0;
    for seed in 1..=4 {
        let spec = format!("random=0.004,seed={seed}");
        let o = vmm(
            &[
                "run",
                "count",
                "--cmdline",
                "n=40 work=2000",
                "--checkpoint-every",
                "5",
                "--on-failure",
                "rollback",
                "--max-restarts",
                "1000",
                "--inject-fault",
                &spec,
            ],
            LIMIT,
        );
        count_once_each(&o, 40);
        failures += o.stderr.matches("vmm: rollback ").count();
        assert!(o.stderr.contains("vmm: output commit: "), "the delay it adds is reported: {}", o.stderr);
    }
    assert!(failures >= 8, "several injected failures per run, {failures} in all");
}

#[test]
fn an_emulation_failure_is_rolled_back_too_until_the_restarts_run_out() {
    if !kvm_available() {
        return;
    }
    let _one = exclusive();
    // `int3` at CPL0 is an emulation failure on this nested KVM (on hardware
    // KVM, with no IDT, a triple fault): a guest failure either way, and the
    // same one on every try.
    let image = temp_path("int3.bin");
    std::fs::write(&image, [0xcc]).unwrap();
    let image = image.to_str().unwrap().to_string();
    let args =
        ["run", &image, "--mode", "long", "--checkpoint-every", "5", "--on-failure", "rollback", "--max-restarts", "2"];
    let o = vmm(&args, LIMIT);
    assert!(o.status == 74 || o.status == 73, "{}", o.stderr);
    assert_eq!(o.stderr.matches("vmm: rollback ").count(), 2, "{}", o.stderr);
    assert!(o.stderr.contains("vmm: rollback 2 of at most 2: "), "{}", o.stderr);
    assert!(o.stderr.contains("vmm: giving up after 2 rollbacks (--max-restarts 2)"), "{}", o.stderr);
}

#[test]
fn checkpoints_in_a_directory_roll_back_and_are_snapshots_vmm_restore_reads() {
    if !kvm_available() {
        return;
    }
    let _one = exclusive();
    let dir = temp_path("ckpt-dir");
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let spec = "random=0.004,seed=2";
    let args = ["run", "count", "--cmdline", "n=30 work=2000", "--checkpoint-every", "10", "--checkpoint-dir", d];
    let o = vmm(
        &[&args[..], &["--on-failure", "rollback", "--max-restarts", "100", "--inject-fault", spec]].concat(),
        LIMIT,
    );
    count_once_each(&o, 30);
    assert!(o.stderr.contains("vmm: rollback ") && o.stderr.contains("in the checkpoint directory"), "{}", o.stderr);
    // Both slots hold a whole checkpoint: each restores in a new process and runs the guest to its end.
    for slot in ["slot-0", "slot-1"] {
        let path = dir.join(slot);
        let info = vmm(&["snapshot-info", path.to_str().unwrap()], LIMIT);
        assert_eq!(info.status, 0, "{slot}: {}", info.stderr);
        let restored = vmm(&["restore", path.to_str().unwrap(), "--timeout", "30"], LIMIT);
        assert_eq!(restored.status, 0, "{slot}: {}", restored.stderr);
        // The rest of the sequence from where that checkpoint was, each line once.
        let full: String = (1..=30).map(|i| format!("count {i}\n")).collect::<String>() + "count: done\n";
        assert!(full.ends_with(&restored.stdout), "{slot}: {}", restored.stdout);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `vmm supervise` with its JSON log in a file.
struct Supervisor {
    child: Child,
    log: PathBuf,
}

impl Supervisor {
    fn start(name: &str, args: &[&str]) -> Self {
        let log = temp_path(&format!("supervise-{name}.json"));
        let _ = std::fs::remove_file(&log);
        let child = Command::new(binary("vmm"))
            .arg("supervise")
            .args(args)
            .args(["--log", log.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vmm supervise");
        Supervisor { child, log }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(String::from).collect()
    }

    fn events(&self, event: &str) -> Vec<String> {
        self.lines().into_iter().filter(|l| field(l, "event").as_deref() == Some(event)).collect()
    }

    /// Waits for the `n`-th `event` line (from 1).
    fn wait(&self, event: &str, n: usize) -> String {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self.events(event).into_iter().nth(n - 1) {
                return line;
            }
            assert!(Instant::now() < until, "no {event} #{n} in the log:\n{}", self.lines().join("\n"));
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn active_pid(&self) -> i32 {
        let spawned = self.events("spawn");
        let active = spawned.iter().rev().find(|l| field(l, "role").as_deref() == Some("active")).unwrap();
        field(active, "pid").unwrap().parse().unwrap()
    }

    fn signal(pid: i32, signal: i32) {
        // SAFETY: kill with a pid and a signal number has no memory effects.
        unsafe { libc::kill(pid, signal) };
    }

    /// Ends it (SIGTERM: it kills its children first), returning its status and output.
    fn finish(mut self, terminate: bool) -> Outcome {
        if terminate {
            Self::signal(self.child.id() as i32, libc::SIGTERM);
        }
        let out = wait_with_limit(&mut self.child);
        let _ = std::fs::remove_file(&self.log);
        out
    }
}

fn wait_with_limit(child: &mut Child) -> Outcome {
    let until = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("vmm supervise still ran after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut stdout);
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    Outcome { status: status.code().unwrap_or(-1), stdout, stderr }
}

#[test]
fn the_supervisor_detects_a_killed_and_a_stopped_vmm_and_restarts_it() {
    if !kvm_available() {
        return;
    }
    let _one = exclusive();
    // 100 ms x 9 (1 s): generous, as the machine is shared (the false-positive table in docs/benchmarks.md).
    let args = ["ib700", "--cmdline", "pets=100000000", "--heartbeat-ms", "100", "--heartbeat-misses", "9"];
    let s = Supervisor::start("signals", &args);
    s.wait("started", 1);
    std::thread::sleep(Duration::from_millis(200));
    Supervisor::signal(s.active_pid(), libc::SIGKILL);
    let failure = s.wait("failure", 1);
    assert_eq!(field(&failure, "detector").as_deref(), Some("exit"), "{failure}");
    assert!(field(&failure, "cause").unwrap().contains("killed by signal 9 (SIGKILL)"), "{failure}");
    s.wait("running", 1);
    std::thread::sleep(Duration::from_millis(200));
    let stopped = s.active_pid();
    Supervisor::signal(stopped, libc::SIGSTOP);
    let failure = s.wait("failure", 2);
    assert_eq!(field(&failure, "detector").as_deref(), Some("heartbeat"), "{failure}");
    let silence: f64 = field(&failure, "detection_ms").unwrap().parse().unwrap();
    assert!((900.0..5000.0).contains(&silence), "declared after {silence} ms of silence: {failure}");
    assert!(!s.events("heartbeat-miss").is_empty());
    let restart = s.wait("restart", 2);
    assert_eq!(field(&restart, "attempt").as_deref(), Some("2"), "{restart}");
    s.wait("running", 2);
    let o = s.finish(true);
    assert_eq!(o.status, 128 + libc::SIGTERM, "{}", o.stderr);
}

#[test]
fn a_hung_vmm_and_a_hung_guest_are_declared_failed() {
    if !kvm_available() {
        return;
    }
    let _one = exclusive();
    // The VMM's controller hangs 150 ms in (attempt 0 only; the guest runs long enough that the hang comes first): the heartbeats (over two pipes here) stop,
    // the restart runs to the end. (n=20 work=50000 took 0.36 s alone but
    // once ended in 72 ms, before the hang: a million units of work more
    // than triple that.)
    let beats = ["--heartbeat-ms", "100", "--heartbeat-misses", "9", "--channel", "pipe"];
    let args =
        [&["count", "--cmdline", "n=20 work=300000", "--inject-fault", "hang-after-ms=150"][..], &beats].concat();
    let s = Supervisor::start("hung-vmm", &args);
    let failure = s.wait("failure", 1);
    assert_eq!(field(&failure, "detector").as_deref(), Some("heartbeat"), "{failure}");
    let o = s.finish(false);
    assert_eq!(numbers(&o.stdout), (1..=20).collect::<Vec<_>>(), "{}", o.stderr);

    // A guest that stops petting: the IB700 in the child catches it; with no restart allowed, a clear end.
    let args = ["ib700", "--cmdline", "hang=1", "--watchdog-action", "shutdown", "--max-restarts", "0"];
    let s = Supervisor::start("hung-guest", &[&args[..], &beats].concat());
    let failure = s.wait("failure", 1);
    assert_eq!(field(&failure, "detector").as_deref(), Some("report"), "{failure}");
    assert!(field(&failure, "cause").unwrap().contains("IB700"), "{failure}");
    assert_eq!(s.events("give-up").len(), 1);
    let o = s.finish(false);
    assert_eq!(o.status, 85, "{}", o.stderr);
    assert!(o.stderr.contains("giving up: the guest failed 1 times (--max-restarts 0)"), "{}", o.stderr);

    // A crash of the VMM itself (SIGKILL from within) is seen at once by the channel's end.
    let args = ["count", "--cmdline", "n=5 work=600000", "--inject-fault", "crash-after-ms=100"];
    let s = Supervisor::start("crash", &[&args[..], &beats].concat());
    let failure = s.wait("failure", 1);
    assert_eq!(field(&failure, "detector").as_deref(), Some("exit"), "{failure}");
    let o = s.finish(false);
    assert_eq!(numbers(&o.stdout), (1..=5).collect::<Vec<_>>(), "{}", o.stderr);
}

/// The restart delays a supervisor logged with `policy` (base 5 ms, cap 100 ms) for four failures.
fn delays(policy: &str) -> (Vec<f64>, Vec<f64>, Outcome) {
    let args = [
        "count",
        "--cmdline",
        "n=1000 work=100",
        "--inject-fault",
        "shutdown-after-exits=30,attempts=all",
        "--restart",
        policy,
        "--backoff-base-ms",
        "5",
        "--backoff-max-ms",
        "100",
        "--backoff-seed",
        "3",
        "--max-restarts",
        "6",
    ];
    let s = Supervisor::start(&format!("backoff-{policy}"), &args);
    let _ = s.child.id();
    let mut s = s;
    let o = wait_with_limit(&mut s.child);
    let restarts = s.events("restart");
    let logged = restarts.iter().map(|l| field(l, "delay_ms").unwrap().parse().unwrap()).collect();
    // The waits themselves: from each restart decision to the next child's spawn.
    let lines = s.lines();
    let mut waited = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if field(l, "event").as_deref() == Some("restart") {
            let next = lines[i..].iter().find(|n| field(n, "event").as_deref() == Some("spawn")).unwrap();
            let t = |l: &str| field(l, "time_ms").unwrap().parse::<f64>().unwrap();
            waited.push(t(next) - t(l));
        }
    }
    let _ = std::fs::remove_file(&s.log);
    (logged, waited, o)
}

#[test]
fn each_backoff_policy_spaces_the_restarts_as_it_says_and_exhaustion_is_final() {
    if !kvm_available() {
        return;
    }
    let _one = exclusive();
    for policy in ["linear", "exponential", "jitter-full", "jitter-equal", "jitter-decorrelated"] {
        let (d, waited, o) = delays(policy);
        assert_eq!(o.status, 85, "{policy}: {}", o.stderr);
        assert!(o.stderr.contains("giving up: the guest failed 7 times (--max-restarts 6)"), "{}", o.stderr);
        assert_eq!(d.len(), 6, "{policy}: {d:?}");
        for (delay, waited) in d.iter().zip(&waited) {
            assert!(waited + 0.5 >= *delay, "{policy}: waited {waited} ms for a {delay} ms delay");
        }
        let exp: Vec<f64> = (0..6).map(|i| (5.0 * f64::from(1 << i)).min(100.0)).collect();
        match policy {
            "linear" => assert_eq!(d, [5.0, 10.0, 15.0, 20.0, 25.0, 30.0]),
            "exponential" => assert_eq!(d, [5.0, 10.0, 20.0, 40.0, 80.0, 100.0]),
            "jitter-full" => assert!(d.iter().zip(&exp).all(|(d, e)| (0.0..=*e).contains(d)), "{d:?}"),
            "jitter-equal" => assert!(d.iter().zip(&exp).all(|(d, e)| (e / 2.0..=*e).contains(d)), "{d:?}"),
            _ => {
                let mut previous = 5.0;
                for &x in &d {
                    assert!((5.0..=(previous * 3.0f64).min(100.0)).contains(&x), "{d:?}");
                    previous = x;
                }
            }
        }
        if policy.starts_with("jitter") {
            assert!(d.windows(2).any(|w| w[0] != w[1]), "{policy} jitters: {d:?}");
        }
    }
    let (d, _, o) = delays("none");
    assert!(d.is_empty());
    assert_eq!(o.status, 73, "--restart none ends with the guest's status: {}", o.stderr);
    assert!(o.stderr.contains("--restart none does not restart it"), "{}", o.stderr);
}

#[test]
fn warm_and_cold_standbys_fail_over_and_the_sequence_comes_out_once() {
    if !kvm_available() {
        return;
    }
    let _one = exclusive();
    for standby in ["warm", "cold"] {
        let args = [
            "count",
            "--cmdline",
            "n=60 work=2000",
            "--inject-fault",
            "shutdown-after-exits=150,attempts=all",
            // (every 20 ms was too seldom: on a fast run the 150 exits took
            // 16 ms, no attempt reached a checkpoint, none made progress)
            "--checkpoint-every",
            "5",
            "--standby",
            standby,
            "--backoff-base-ms",
            "1",
            "--max-restarts",
            "100",
        ];
        let mut s = Supervisor::start(&format!("standby-{standby}"), &args);
        let o = wait_with_limit(&mut s.child);
        count_once_each(&o, 60);
        let running = s.events("running");
        let _ = std::fs::remove_file(&s.log);
        assert!(running.len() >= 3, "{standby}: several failovers: {running:?}");
        for line in &running {
            assert_eq!(field(line, "standby").as_deref(), Some(standby), "{line}");
            assert!(field(line, "failover_ms").unwrap().parse::<f64>().is_ok(), "{line}");
        }
        if standby == "warm" {
            // Whether the standby had the latest checkpoint loaded (one committed just before the failure it loads
            // on promotion) depends on the machine's load: the failover figure counts it, the test only reads it.
            assert!(running.iter().all(|l| matches!(field(l, "preloaded").as_deref(), Some("true" | "false"))));
        }
    }
}

/// Reads stderr lines until the metrics address is announced.
fn metrics_address(stderr: &mut impl BufRead) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no metrics address was printed");
        if let Some(rest) = line.trim().strip_prefix("vmm: metrics on http://") {
            return rest.trim_end_matches("/metrics").to_string();
        }
    }
}

fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics port");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.0 200 OK\r\n"), "{page}");
    page
}

fn value(page: &str, metric: &str) -> f64 {
    let line = page.lines().find(|l| l.starts_with(metric) && l[metric.len()..].starts_with(' '));
    line.unwrap_or_else(|| panic!("no {metric} in\n{page}")).rsplit(' ').next().unwrap().parse().unwrap()
}

fn metrics_of(
    args: &[&str],
    scrape_after: Duration,
    kill_child_of: Option<&Path>,
    ready: impl Fn(&str) -> bool,
) -> String {
    let mut child = Command::new(binary("vmm"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = metrics_address(&mut stderr);
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    if let Some(log) = kill_child_of {
        std::thread::sleep(Duration::from_millis(300));
        let text = std::fs::read_to_string(log).unwrap();
        let pid: i32 = text.lines().find_map(|l| field(l, "pid")).unwrap().parse().unwrap();
        Supervisor::signal(pid, libc::SIGKILL);
    }
    // The figures come as the run goes: scrape until they are all there (a loaded machine is slow).
    let until = Instant::now() + Duration::from_secs(15);
    let page = loop {
        std::thread::sleep(scrape_after);
        let page = scrape(&addr);
        if ready(&page) || Instant::now() > until {
            break page;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    page
}

#[test]
fn metrics_are_served_in_the_prometheus_text_format() {
    if !kvm_available() {
        return;
    }
    let _one = exclusive();
    let args = ["run", "ib700", "--cmdline", "pets=100000000", "--checkpoint-every", "20", "--metrics", "127.0.0.1:0"];
    let ready = |p: &str| p.contains("vmm_checkpoints_total") && value(p, "vmm_checkpoints_total") >= 5.0;
    let page = metrics_of(&args, Duration::from_millis(500), None, ready);
    assert!(page.contains("# TYPE vmm_exits_total counter"), "{page}");
    assert!(value(&page, "vmm_exits_total{kind=\"io-out\"}") > 0.0, "{page}");
    assert!(value(&page, "vmm_checkpoints_total") >= 5.0, "{page}");
    assert!(value(&page, "vmm_checkpoint_seconds_total") > 0.0, "{page}");
    assert_eq!(value(&page, "vmm_rollbacks_total"), 0.0, "{page}");

    let log = temp_path("supervise-metrics.json");
    let log_arg = log.to_str().unwrap();
    let args = ["supervise", "ib700", "--cmdline", "pets=100000000", "--metrics", "127.0.0.1:0", "--log", log_arg];
    let args = [&args[..], &["--heartbeat-ms", "100", "--heartbeat-misses", "9"]].concat();
    let ready = |p: &str| {
        value(p, "vmm_supervisor_failovers_total{standby=\"cold\"}") >= 1.0
            && value(p, "vmm_child_exits_total{kind=\"io-out\"}") > 0.0
    };
    let page = metrics_of(&args, Duration::from_millis(500), Some(&log), ready);
    assert_eq!(value(&page, "vmm_supervisor_restarts_total"), 1.0, "{page}");
    assert_eq!(value(&page, "vmm_supervisor_failures_total"), 1.0, "{page}");
    assert!(value(&page, "vmm_supervisor_heartbeats_total") > 2.0, "{page}");
    assert_eq!(value(&page, "vmm_supervisor_failovers_total{standby=\"cold\"}"), 1.0, "{page}");
    assert!(value(&page, "vmm_child_exits_total{kind=\"io-out\"}") > 0.0, "{page}");
    let _ = std::fs::remove_file(&log);
}
