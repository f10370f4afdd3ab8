//! `pvm bench --compare`: the same algorithms from ../shared/bench-peers
//! under gcc -O2, luajit, luajit -joff and lua5.4, timed as whole processes,
//! their checksum lines checked against ours.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The peers, in table order.
pub const NAMES: [&str; 4] = ["gcc -O2", "luajit", "luajit -joff", "lua5.4"];

/// Median wall time per peer for one program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerTimes(pub Vec<(&'static str, Duration)>);

impl PeerTimes {
    pub fn get(&self, name: &str) -> Option<Duration> {
        self.0.iter().find(|(n, _)| *n == name).map(|&(_, d)| d)
    }
}

/// Where the peer sources are and which tools this machine has.
#[derive(Debug)]
pub struct Peers {
    dir: PathBuf,
    build: PathBuf,
    available: Vec<&'static str>,
}

fn has(tool: &str, arg: &str) -> bool {
    Command::new(tool).arg(arg).output().is_ok_and(|o| o.status.success())
}

impl Peers {
    /// Finds the peer sources in `dir` and the installed tools.
    pub fn discover(dir: &Path) -> Result<Peers, String> {
        if !dir.join("fib/fib.c").exists() {
            return Err(format!("no peer programs in {} (expected fib/fib.c there): pass --peers DIR", dir.display()));
        }
        let mut available = Vec::new();
        if has("gcc", "--version") {
            available.push("gcc -O2");
        }
        if has("luajit", "-v") {
            available.extend(["luajit", "luajit -joff"]);
        }
        if has("lua5.4", "-v") {
            available.push("lua5.4");
        }
        let build = std::env::temp_dir().join(format!("pvm-peers-{}", std::process::id()));
        std::fs::create_dir_all(&build).map_err(|e| format!("cannot create {}: {e}", build.display()))?;
        Ok(Peers { dir: dir.to_path_buf(), build, available })
    }

    /// Tools found.
    pub fn available(&self) -> &[&'static str] {
        &self.available
    }

    fn command(&self, peer: &str, program: &str) -> Result<Command, String> {
        let lua = self.dir.join(program).join(format!("{program}.lua"));
        Ok(match peer {
            "gcc -O2" => {
                let exe = self.build.join(program);
                if !exe.exists() {
                    let src = self.dir.join(program).join(format!("{program}.c"));
                    let ok = Command::new("gcc")
                        .arg("-O2")
                        .arg("-o")
                        .arg(&exe)
                        .arg(&src)
                        .status()
                        .is_ok_and(|s| s.success());
                    if !ok {
                        return Err(format!("gcc -O2 failed on {}", src.display()));
                    }
                }
                Command::new(exe)
            }
            "luajit" => {
                let mut c = Command::new("luajit");
                c.arg(lua);
                c
            }
            "luajit -joff" => {
                let mut c = Command::new("luajit");
                c.arg("-joff").arg(lua);
                c
            }
            _ => {
                let mut c = Command::new("lua5.4");
                c.arg(lua);
                c
            }
        })
    }

    /// Times `program` under every available peer, `rounds` times each,
    /// checking each prints `want`.
    pub fn time(&self, program: &str, want: &str, rounds: u32) -> Result<PeerTimes, String> {
        let mut out = Vec::new();
        for &peer in &self.available {
            let mut times = Vec::new();
            for _ in 0..rounds.max(1) {
                let mut cmd = self.command(peer, program)?;
                let start = Instant::now();
                let o = cmd.output().map_err(|e| format!("{peer} {program}: {e}"))?;
                times.push(start.elapsed());
                let got = String::from_utf8_lossy(&o.stdout);
                if got != want {
                    return Err(format!("{peer} {program} printed {got:?}, pvm prints {want:?}"));
                }
            }
            times.sort();
            out.push((peer, times[times.len() / 2]));
        }
        Ok(PeerTimes(out))
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.build);
    }
}
