//! `pvm bench --wasm`'s peers: the WebAssembly programs of the
//! `wasm-programs` crate under other runtimes, timed as whole processes
//! (start-up, compilation and run), every run's standard output and exit
//! status checked against the program's expectation.
//!
//! | peer | how a run is started | install (`scripts/install-wasm-peers.sh`) |
//! |---|---|---|
//! | gcc -O2 | the program's C source, compiled natively once | `apt-get install gcc` |
//! | V8 TurboFan | `node --no-liftoff node-wasi.mjs` | `apt-get install nodejs` (Node 20) |
//! | V8 Liftoff | `node --liftoff --no-wasm-tier-up node-wasi.mjs` | the same |
//! | wasmtime | `wasmtime run` if on PATH, else `python3 wasmtime-wasi.py` | `pip install wasmtime` |
//! | wasmi | `wasmi run` (or `wasmi_cli run`) | `cargo install wasmi_cli` |
//! | wasm3 | `python3 wasm3-wasi.py` | `pip install pywasm3` |
//!
//! The runner scripts are `wasm_programs::runners`; [`WasmPeers::discover`]
//! writes them to a work directory, with each module as `NAME.wasm` (so a
//! program printing its argv[0] sees the same name everywhere). The module
//! sees only the program's own environment; the native build is started
//! with exactly that environment too. Peers that are not installed are
//! listed by [`WasmPeers::missing`], not an error.
//!
//! pvm depends on `wasm-programs` (which depends on nothing of ours, so
//! there is no cycle), and [`WasmPeers::time`] takes a
//! [`wasm_programs::WasmProgram`]:
//!
//! ```no_run
//! let peers = pvm::wasm_peers::WasmPeers::discover()?;
//! let fib = wasm_programs::find("fib").unwrap();
//! let times = peers.time(fib, 5)?; // median of 5 rounds, peers interleaved
//! let turbofan = times.get("V8 TurboFan");
//! # Ok::<(), pvm::wasm_peers::WasmPeersError>(())
//! ```
//!
//! That [`PeerTimes`] is what `bench::BenchRow::peers` holds, so a
//! `pvm bench --wasm` row can carry it beside our engines' times;
//! [`report::render`] prints the peers' own tables from
//! [`WasmPeers::time_suite`]'s samples (docs/wasm-programs.md).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasm_programs::{runners, WasmProgram};

use crate::peers::PeerTimes;

pub mod report;

/// A runtime (or the native build) that runs the WebAssembly programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmPeer {
    GccO2,
    V8TurboFan,
    V8Liftoff,
    Wasmtime,
    Wasmi,
    Wasm3,
}

/// The peers' names, in table order.
pub const NAMES: [&str; 6] = ["gcc -O2", "V8 TurboFan", "V8 Liftoff", "wasmtime", "wasmi", "wasm3"];

impl WasmPeer {
    /// Every peer, in table order.
    pub const ALL: [WasmPeer; 6] = [
        WasmPeer::GccO2,
        WasmPeer::V8TurboFan,
        WasmPeer::V8Liftoff,
        WasmPeer::Wasmtime,
        WasmPeer::Wasmi,
        WasmPeer::Wasm3,
    ];

    /// The name in tables and in [`PeerTimes`].
    pub fn name(self) -> &'static str {
        NAMES[self as usize]
    }

    /// How to install it.
    pub fn install_hint(self) -> &'static str {
        match self {
            WasmPeer::GccO2 => "apt-get install gcc",
            WasmPeer::V8TurboFan | WasmPeer::V8Liftoff => "apt-get install nodejs (Node 20 or newer)",
            WasmPeer::Wasmtime => "pip install wasmtime (or a wasmtime binary on PATH)",
            WasmPeer::Wasmi => "cargo install wasmi_cli",
            WasmPeer::Wasm3 => "pip install pywasm3",
        }
    }
}

/// How a found peer is started.
#[derive(Clone, Debug)]
enum Launcher {
    Native,
    /// `node` with these V8 flags and the node runner.
    Node(&'static [&'static str]),
    /// `python3` with this runner script.
    Python(PathBuf),
    /// `wasmtime run`.
    WasmtimeCli,
    /// `wasmi run`, the binary's name.
    WasmiCli(&'static str),
}

/// A peer found on this machine.
#[derive(Clone, Debug)]
struct Found {
    peer: WasmPeer,
    version: String,
    launcher: Launcher,
}

/// Why a peer could not be set up or timed.
#[derive(Debug, thiserror::Error)]
pub enum WasmPeersError {
    #[error("cannot create the peers' work directory {}", path.display())]
    WorkDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("gcc -O2 cannot compile {program}: {stderr}")]
    Compile { program: String, stderr: String },
    #[error("cannot start {peer} for {program}")]
    Spawn {
        peer: &'static str,
        program: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{peer} on {program} printed {:?} and ended with {}, but the program must print {:?} and exit with \
         status {}; its stderr: {:?}",
        .run.got, .run.status, .run.want, .run.want_status, .run.stderr
    )]
    Mismatch {
        peer: &'static str,
        program: String,
        /// Boxed: what a wrong run did is large beside the other errors.
        run: Box<WrongRun>,
    },
}

/// What a run that did not meet its program's expectation did.
#[derive(Debug)]
pub struct WrongRun {
    /// Its standard output.
    pub got: String,
    /// How it ended ("status 3", or the signal).
    pub status: String,
    /// The expected standard output.
    pub want: &'static str,
    /// The expected exit status.
    pub want_status: i32,
    /// Its standard error.
    pub stderr: String,
}

/// Every run's wall time per peer for one program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerSamples(pub Vec<(&'static str, Vec<Duration>)>);

impl PeerSamples {
    /// The median per peer.
    pub fn medians(&self) -> PeerTimes {
        PeerTimes(self.0.iter().map(|(name, runs)| (*name, crate::bench::median(runs).unwrap_or_default())).collect())
    }
}

/// The peers this machine has, and a work directory for their files
/// (removed when this is dropped).
#[derive(Debug)]
pub struct WasmPeers {
    dir: PathBuf,
    found: Vec<Found>,
    missing: Vec<WasmPeer>,
}

/// The first line `program args` prints, if it runs and succeeds.
fn probe(program: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(program).args(args).stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&o.stdout);
    o.status.success().then(|| text.lines().next().unwrap_or("").trim().to_string())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), WasmPeersError> {
    std::fs::write(path, bytes).map_err(|source| WasmPeersError::Write { path: path.to_path_buf(), source })
}

const PYTHON: &str = "python3";

impl WasmPeers {
    /// Finds the installed peers and writes the runner scripts to a fresh
    /// work directory under the temp dir.
    ///
    /// # Errors
    ///
    /// The work directory or a runner script cannot be written.
    pub fn discover() -> Result<WasmPeers, WasmPeersError> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pvm-wasm-peers-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| WasmPeersError::WorkDir { path: dir.clone(), source })?;
        let peers = WasmPeers { dir, found: Vec::new(), missing: Vec::new() };
        peers.fill()
    }

    fn fill(mut self) -> Result<WasmPeers, WasmPeersError> {
        let node_runner = self.dir.join("node-wasi.mjs");
        write_file(&node_runner, runners::NODE_WASI.as_bytes())?;
        let node = probe("node", &["-p", "`node ${process.version}, V8 ${process.versions.v8}`"]);
        let python_version = |module: &str, package: &str| {
            let code = format!("import importlib.metadata as m, {module}; print(m.version({package:?}))");
            probe(PYTHON, &["-c", &code])
        };
        for peer in WasmPeer::ALL {
            let found = match peer {
                WasmPeer::GccO2 => probe("gcc", &["--version"]).map(|v| (v, Launcher::Native)),
                WasmPeer::V8TurboFan => node.clone().map(|v| (v, Launcher::Node(&["--no-liftoff"]))),
                WasmPeer::V8Liftoff => node.clone().map(|v| (v, Launcher::Node(&["--liftoff", "--no-wasm-tier-up"]))),
                WasmPeer::Wasmtime => match probe("wasmtime", &["--version"]) {
                    Some(v) => Some((v, Launcher::WasmtimeCli)),
                    None => match python_version("wasmtime", "wasmtime") {
                        Some(v) => {
                            Some((format!("wasmtime-py {v}"), self.script("wasmtime-wasi.py", runners::WASMTIME_WASI)?))
                        }
                        None => None,
                    },
                },
                WasmPeer::Wasmi => ["wasmi", "wasmi_cli"]
                    .into_iter()
                    .find_map(|bin| probe(bin, &["--version"]).map(|v| (v, Launcher::WasmiCli(bin)))),
                WasmPeer::Wasm3 => {
                    let code = "import importlib.metadata as m, wasm3; print(m.version('pywasm3'), wasm3.M3_VERSION)";
                    match probe(PYTHON, &["-c", code]) {
                        Some(v) => Some((format!("pywasm3 {v}"), self.script("wasm3-wasi.py", runners::WASM3_WASI)?)),
                        None => None,
                    }
                }
            };
            match found {
                Some((version, launcher)) => self.found.push(Found { peer, version, launcher }),
                None => self.missing.push(peer),
            }
        }
        Ok(self)
    }

    fn script(&self, file: &str, text: &str) -> Result<Launcher, WasmPeersError> {
        let path = self.dir.join(file);
        write_file(&path, text.as_bytes())?;
        Ok(Launcher::Python(path))
    }

    /// The peers found, in table order.
    pub fn available(&self) -> Vec<&'static str> {
        self.found.iter().map(|f| f.peer.name()).collect()
    }

    /// Each peer found and its version line.
    pub fn versions(&self) -> Vec<(&'static str, &str)> {
        self.found.iter().map(|f| (f.peer.name(), f.version.as_str())).collect()
    }

    /// The peers not found, each with how to install it.
    pub fn missing(&self) -> Vec<(&'static str, &'static str)> {
        self.missing.iter().map(|p| (p.name(), p.install_hint())).collect()
    }

    /// Keeps only the peers named in `names` (all if empty).
    pub fn retain(&mut self, names: &[&str]) {
        if !names.is_empty() {
            self.found.retain(|f| names.contains(&f.peer.name()));
        }
    }

    /// Times `program` under every peer found: `rounds` rounds, each
    /// running every peer once; the median per peer.
    ///
    /// # Errors
    ///
    /// A peer cannot be started, the native build does not compile, or a
    /// run's output or exit status differs from the program's expectation.
    pub fn time(&self, program: &WasmProgram, rounds: u32) -> Result<PeerTimes, WasmPeersError> {
        Ok(self.time_suite(&[program], rounds)?.remove(0).medians())
    }

    /// Times several programs, interleaved as ../shared/bench-peers/run.sh
    /// does: each round runs every program under every peer once, so slow
    /// drift on a shared machine hits all alike. Every run, per program.
    ///
    /// # Errors
    ///
    /// As [`WasmPeers::time`].
    pub fn time_suite(&self, programs: &[&WasmProgram], rounds: u32) -> Result<Vec<PeerSamples>, WasmPeersError> {
        let mut samples: Vec<PeerSamples> = programs
            .iter()
            .map(|_| PeerSamples(self.found.iter().map(|f| (f.peer.name(), Vec::new())).collect()))
            .collect();
        for program in programs {
            write_file(&self.wasm_path(program), program.wasm)?;
        }
        for _ in 0..rounds.max(1) {
            for (program, sample) in programs.iter().zip(&mut samples) {
                for (found, (_, runs)) in self.found.iter().zip(&mut sample.0) {
                    runs.push(self.run(found, program)?);
                }
            }
        }
        Ok(samples)
    }

    fn wasm_path(&self, program: &WasmProgram) -> PathBuf {
        self.dir.join(format!("{}.wasm", program.name))
    }

    /// The natively compiled program, built on first use.
    fn native(&self, program: &WasmProgram) -> Result<PathBuf, WasmPeersError> {
        let exe = self.dir.join(program.name);
        if exe.exists() {
            return Ok(exe);
        }
        let source = self.dir.join(format!("{}.c", program.name));
        write_file(&source, program.c_source.as_bytes())?;
        let o = Command::new("gcc").arg("-O2").arg("-o").arg(&exe).arg(&source).output().map_err(|source| {
            WasmPeersError::Spawn { peer: WasmPeer::GccO2.name(), program: program.name.to_string(), source }
        })?;
        if !o.status.success() {
            let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
            return Err(WasmPeersError::Compile { program: program.name.to_string(), stderr });
        }
        Ok(exe)
    }

    fn command(&self, found: &Found, program: &WasmProgram) -> Result<Command, WasmPeersError> {
        let wasm = self.wasm_path(program);
        let env_args = || program.env.iter().flat_map(|(k, v)| ["--env".to_string(), format!("{k}={v}")]);
        let mut cmd = match &found.launcher {
            Launcher::Native => {
                let mut c = Command::new(self.native(program)?);
                c.env_clear().envs(program.env.iter().copied());
                c
            }
            Launcher::Node(flags) => {
                let mut c = Command::new("node");
                c.arg("--no-warnings").arg("--experimental-wasi-unstable-preview1").args(*flags);
                c.arg(self.dir.join("node-wasi.mjs")).args(env_args()).arg(&wasm);
                c
            }
            Launcher::Python(script) => {
                let mut c = Command::new(PYTHON);
                c.arg(script).args(env_args()).arg(&wasm);
                c
            }
            Launcher::WasmtimeCli => {
                let mut c = Command::new("wasmtime");
                c.arg("run").args(env_args()).arg(&wasm);
                c
            }
            Launcher::WasmiCli(bin) => {
                let mut c = Command::new(bin);
                c.arg("run").args(env_args()).arg("--").arg(&wasm);
                c
            }
        };
        cmd.args(program.args);
        Ok(cmd)
    }

    /// One run: wall time from spawn to exit, output checked.
    fn run(&self, found: &Found, program: &WasmProgram) -> Result<Duration, WasmPeersError> {
        timed_run(found.peer.name(), self.command(found, program)?, program)
    }
}

/// Runs `cmd` (the program under runtime `peer`) as a whole process with
/// the program's standard input: the wall time from spawn to exit, its
/// output and exit status checked against the program's expectation.
///
/// # Errors
///
/// The process cannot be started, or its output or status is not the
/// expected one.
pub fn timed_run(peer: &'static str, mut cmd: Command, program: &WasmProgram) -> Result<Duration, WasmPeersError> {
    let spawn_error = |source| WasmPeersError::Spawn { peer, program: program.name.to_string(), source };
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(spawn_error)?;
    let stdin = child.stdin.take();
    let output = std::thread::scope(|s| {
        s.spawn(move || {
            // A program may exit without reading its input: a broken pipe is not an error.
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(program.stdin);
            }
        });
        child.wait_with_output()
    })
    .map_err(spawn_error)?;
    let elapsed = start.elapsed();
    let got = String::from_utf8_lossy(&output.stdout);
    if got != program.expected_stdout || output.status.code() != Some(program.expected_status) {
        let status = output.status.code().map_or_else(|| output.status.to_string(), |c| format!("status {c}"));
        let run = WrongRun {
            got: got.into_owned(),
            status,
            want: program.expected_stdout,
            want_status: program.expected_status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        return Err(WasmPeersError::Mismatch { peer, program: program.name.to_string(), run: Box::new(run) });
    }
    Ok(elapsed)
}

impl Drop for WasmPeers {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_follow_the_peers() {
        let names: Vec<&str> = WasmPeer::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names, NAMES);
    }

    #[test]
    fn medians_are_taken_per_peer() {
        let ms = Duration::from_millis;
        let s = PeerSamples(vec![("a", vec![ms(3), ms(1), ms(2)]), ("b", vec![ms(5)])]);
        assert_eq!(s.medians(), PeerTimes(vec![("a", ms(2)), ("b", ms(5))]));
    }

    #[test]
    fn the_native_peer_runs_a_program_with_its_arguments_environment_and_status() {
        let Ok(mut peers) = WasmPeers::discover() else { panic!("the work directory") };
        if !peers.available().contains(&"gcc -O2") {
            let _ = writeln!(io::stderr(), "skipped: no gcc");
            return;
        }
        peers.retain(&["gcc -O2"]);
        let hello = wasm_programs::find("hello").unwrap();
        let times = peers.time(hello, 1).unwrap();
        assert_eq!(times.0.len(), 1);
        let mut wrong = *hello;
        wrong.expected_status = 4;
        let err = peers.time(&wrong, 1).unwrap_err().to_string();
        assert!(err.starts_with("gcc -O2 on hello printed "), "{err}");
        assert!(err.contains("ended with status 3, but the program must print"), "{err}");
    }

    #[test]
    fn a_peer_is_either_found_or_listed_as_missing() {
        let peers = WasmPeers::discover().unwrap();
        assert_eq!(peers.available().len() + peers.missing().len(), WasmPeer::ALL.len());
        assert!(peers.missing().iter().all(|(_, hint)| !hint.is_empty()));
    }
}
