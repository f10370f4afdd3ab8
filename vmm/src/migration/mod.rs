//! Live migration, as Clark et al. describe it (NSDI 2005): iterative
//! pre-copy of guest memory with KVM's dirty log while the guest runs, then
//! a short stop-and-copy of the last dirty pages and the machine state.
//!
//! - [`wire`]: the frames and their pure decoder (the fuzz target's entry);
//! - [`source`]: the sending side, run by the controller of `vmm run --migrate-to`;
//! - [`destination`]: `vmm receive`, which builds the VM and resumes it.
//!
//! A dropped connection or a refusal at any point before the destination
//! says `Resumed` leaves the guest running on the source (the migration is
//! aborted and reported); the destination runs the guest only after `Go`
//! and only once it could tell the source so.

pub mod destination;
pub mod source;
pub mod wire;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

pub use wire::{decode, reseal, Message, WireError};

/// How long a peer may stay silent before the other side gives up.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of a migration, on either side.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("{0:?} is not an address: use HOST:PORT (e.g. 127.0.0.1:7000) or unix:PATH")]
    BadAddress(String),
    #[error("cannot {doing} {addr}")]
    Connect {
        doing: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the connection failed while {doing}")]
    Io {
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the peer sent a bad frame")]
    Wire(#[source] WireError),
    #[error("the destination refused the guest: {0}")]
    Refused(String),
    #[error("expected a {expected} frame, got {got}")]
    Protocol { expected: &'static str, got: &'static str },
    #[error("the guest ended during the migration")]
    GuestEnded,
    #[error("the guest's state")]
    Vm(#[source] Box<crate::vm::VmError>),
    #[error("the state sent is not a usable snapshot")]
    State(#[source] crate::snapshot::SnapshotError),
    #[error("a pages frame at page {first:#x} runs past the {pages} pages of guest RAM")]
    PagesOutside { first: u64, pages: u64 },
}

/// Where the destination listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Tcp(String),
    Unix(PathBuf),
}

impl Address {
    /// `unix:PATH` or `HOST:PORT`.
    ///
    /// # Errors
    ///
    /// [`MigrationError::BadAddress`] for anything else.
    pub fn parse(s: &str) -> Result<Self, MigrationError> {
        if let Some(path) = s.strip_prefix("unix:") {
            return if path.is_empty() {
                Err(MigrationError::BadAddress(s.into()))
            } else {
                Ok(Address::Unix(path.into()))
            };
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(Address::Tcp(s.into())),
            _ => Err(MigrationError::BadAddress(s.into())),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A connection of either kind.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn set_timeouts(&self, t: Duration) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            Stream::Unix(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }

    /// Sends one frame.
    pub fn send(&mut self, msg: &Message<'_>, doing: &'static str) -> Result<(), MigrationError> {
        let mut frame = Vec::new();
        wire::encode(msg, &mut frame);
        self.write_all(&frame).map_err(|source| MigrationError::Io { doing, source })
    }

    /// Receives one frame into `buf` and decodes it.
    pub fn receive<'b>(&mut self, buf: &'b mut Vec<u8>, doing: &'static str) -> Result<Message<'b>, MigrationError> {
        buf.resize(wire::HEADER_LEN, 0);
        self.read_exact(buf).map_err(|source| MigrationError::Io { doing, source })?;
        let total = wire::frame_len(buf).map_err(MigrationError::Wire)?;
        buf.resize(total, 0);
        self.read_exact(&mut buf[wire::HEADER_LEN..]).map_err(|source| MigrationError::Io { doing, source })?;
        wire::decode(buf).map(|(m, _)| m).map_err(MigrationError::Wire)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One round of the migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Round {
    pub pages: u64,
    pub bytes: u64,
    pub took: Duration,
    /// The stop-and-copy round (the guest paused).
    pub stopped: bool,
}

/// What a migration did, migrated or aborted.
#[derive(Clone, Debug, Default)]
pub struct MigrationReport {
    pub to: String,
    pub rounds: Vec<Round>,
    /// Bytes sent in all (frames included).
    pub total_bytes: u64,
    /// From the source's pause to the destination's `Resumed`.
    pub downtime: Option<Duration>,
    /// Of the downtime: from the pause request to the vCPU's state in hand.
    pub pause: Option<Duration>,
    /// Of the downtime: from `Done` sent to `Ready` (the destination loading the state).
    pub load: Option<Duration>,
    /// From the start of the migration to its end.
    pub total: Duration,
    /// Why it was aborted, if it was.
    pub aborted: Option<String>,
}

impl MigrationReport {
    /// The report as lines of text (stderr).
    pub fn render(&self, out: &mut dyn Write) -> std::io::Result<()> {
        match &self.aborted {
            None => writeln!(out, "vmm: migrated to {}", self.to)?,
            Some(why) => writeln!(out, "vmm: migration to {} aborted, the guest carries on here: {why}", self.to)?,
        }
        for (i, r) in self.rounds.iter().enumerate() {
            let what = if r.stopped { "stop-and-copy" } else { "pre-copy" };
            let kib = r.bytes / 1024;
            writeln!(out, "  round {:>2} ({what}): {:>7} pages, {kib:>9} KiB, {:>8.3} ms", i + 1, r.pages, ms(r.took))?;
        }
        let downtime = self.downtime.map_or("-".to_string(), |d| format!("{:.3} ms", ms(d)));
        let part = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.3} ms", ms(d)));
        writeln!(
            out,
            "  total: {} KiB in {:.3} ms; downtime {downtime} (pausing the vCPU {}, the destination loading the state {})",
            self.total_bytes / 1024,
            ms(self.total),
            part(self.pause),
            part(self.load)
        )
    }

    /// The report as a JSON object (`--json`).
    pub fn json(&self) -> String {
        let rounds: Vec<String> = self
            .rounds
            .iter()
            .map(|r| {
                format!(
                    "{{\"pages\":{},\"bytes\":{},\"ms\":{:.3},\"stopped\":{}}}",
                    r.pages,
                    r.bytes,
                    ms(r.took),
                    r.stopped
                )
            })
            .collect();
        let downtime = self.downtime.map_or("null".to_string(), |d| format!("{:.3}", ms(d)));
        let part = |d: Option<Duration>| d.map_or("null".to_string(), |d| format!("{:.3}", ms(d)));
        let aborted = self.aborted.as_ref().map_or("null".to_string(), |a| format!("{a:?}"));
        format!(
            "{{\"to\":{:?},\"migrated\":{},\"rounds\":[{}],\"total_bytes\":{},\"downtime_ms\":{downtime},\"pause_ms\":{},\"load_ms\":{},\"total_ms\":{:.3},\"aborted\":{aborted}}}\n",
            self.to,
            self.aborted.is_none(),
            rounds.join(","),
            self.total_bytes,
            part(self.pause),
            part(self.load),
            ms(self.total)
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_tcp_or_unix() {
        assert_eq!(Address::parse("127.0.0.1:7000").unwrap(), Address::Tcp("127.0.0.1:7000".into()));
        assert_eq!(Address::parse("unix:/tmp/m.sock").unwrap(), Address::Unix("/tmp/m.sock".into()));
        for bad in ["7000", "host:", "host:99999", "unix:", ":80"] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_report_has_rounds_downtime_and_json() {
        let r = MigrationReport {
            to: "127.0.0.1:1".into(),
            rounds: vec![
                Round { pages: 300, bytes: 1_228_800, took: Duration::from_millis(2), stopped: false },
                Round { pages: 4, bytes: 16_384, took: Duration::from_micros(90), stopped: true },
            ],
            total_bytes: 1_245_184,
            downtime: Some(Duration::from_micros(1500)),
            total: Duration::from_millis(5),
            pause: Some(Duration::from_micros(200)),
            load: Some(Duration::from_micros(400)),
            aborted: None,
        };
        let mut text = Vec::new();
        r.render(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("round  2 (stop-and-copy):       4 pages"), "{text}");
        assert!(text.contains("downtime 1.500 ms"), "{text}");
        let json = r.json();
        assert!(json.contains("\"migrated\":true") && json.contains("\"downtime_ms\":1.500"), "{json}");
    }
}
