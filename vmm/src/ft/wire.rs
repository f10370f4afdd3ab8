//! The supervision channel between `vmm supervise` and its VMM children
//! (a Unix socket pair or two pipes: the child's stdout and stdin). A
//! stream of frames, each
//!
//! ```text
//! magic "VLSV" u32 | version u16 (1) | kind u16 | payload length u32 | payload | CRC-32C u32
//! ```
//!
//! (little-endian; the CRC covers the header and the payload), the same
//! framing as the migration stream. [`decode`] is pure over untrusted
//! bytes: a bad frame is a named [`ChannelError`], never a panic.
//!
//! ```text
//! child (vmm run --supervised)          supervisor
//! Hello {pid, standby} ───────────────►
//! Heartbeat {seq, counters} ──────────►  every --heartbeat-ms; K missed: failed
//! Output {bytes} ─────────────────────►  held until the next Commit
//! Commit {seq, path, exits, took} ────►  releases the held output; seq is the restart point
//! Discard ────────────────────────────►  (a rollback inside the child) drops the held output
//! Failure {status, cause, unix_ns} ───►  the child is about to exit with status
//! End {status} ───────────────────────►  the guest ended: release everything, exit with status
//! warm standby (vmm standby --supervised)
//!                 ◄─────────────────── Load {seq, path}: restore that checkpoint and wait
//! Loaded {seq} ───────────────────────►
//!                 ◄─────────────────── Go {seq, path, attempt}: run it (promotion)
//! Running {seq} ──────────────────────►  the guest runs again (cold children send it too)
//! ```

use crate::codec::{CodecError, Decoder, Encoder, FrameFault, Framing, FRAME_HEADER};

/// The first four bytes of every frame.
pub const MAGIC: u32 = u32::from_le_bytes(*b"VLSV");
/// The protocol version this VMM speaks.
pub const VERSION: u16 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = FRAME_HEADER;
/// Largest payload a frame may have.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Exit kinds counted in a heartbeat (the order of [`crate::ft::metrics::EXIT_KINDS`]).
pub const COUNTED_KINDS: usize = 10;
const MAX_TEXT: u64 = 4096;

/// The supervision channel's frames.
const FRAMING: Framing = Framing { magic: MAGIC, version: VERSION, max_payload: MAX_PAYLOAD };

/// Errors of decoding a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("the frame is truncated: it needs {need} bytes, {have} arrived")]
    Truncated { need: usize, have: usize },
    #[error("not a virtlab supervision channel: a frame starts with {found:#010x}, not \"VLSV\"")]
    BadMagic { found: u32 },
    #[error("the peer speaks supervision protocol version {found}, this vmm speaks version {VERSION} only: run one vmm binary for both")]
    Version { found: u16 },
    #[error("a frame of {len} bytes is larger than the {MAX_PAYLOAD} this protocol allows")]
    TooLong { len: usize },
    #[error("frame checksum mismatch: the frame says {stored:#010x}, its bytes give {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("unknown frame kind {kind}")]
    UnknownKind { kind: u16 },
    #[error("cannot decode a {kind} frame")]
    Decode {
        kind: &'static str,
        #[source]
        source: CodecError,
    },
}

impl From<FrameFault> for ChannelError {
    fn from(f: FrameFault) -> Self {
        match f {
            FrameFault::Truncated { need, have } => ChannelError::Truncated { need, have },
            FrameFault::BadMagic { found } => ChannelError::BadMagic { found },
            FrameFault::Version { found } => ChannelError::Version { found },
            FrameFault::TooLong { len } => ChannelError::TooLong { len },
            FrameFault::Checksum { stored, computed } => ChannelError::Checksum { stored, computed },
        }
    }
}

/// What a child counts, carried by each heartbeat (the supervisor's metrics show them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Exits by kind, in the order of [`crate::ft::metrics::EXIT_KINDS`].
    pub exits: [u64; COUNTED_KINDS],
    pub checkpoints: u64,
    /// Nanoseconds spent taking checkpoints, in all.
    pub checkpoint_ns: u64,
    pub rollbacks: u64,
    pub watchdog_expiries: u64,
}

/// One frame's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Hello { pid: u32, standby: bool },
    Heartbeat { seq: u64, counters: Counters },
    Output { bytes: Vec<u8> },
    Commit { seq: u64, path: String, exits: u64, took_ns: u64 },
    Discard,
    Failure { status: u8, cause: String, unix_ns: u64 },
    End { status: u8 },
    Load { seq: u64, path: String },
    Loaded { seq: u64 },
    Go { seq: u64, path: String, attempt: u32 },
    Running { seq: u64 },
}

const NAMES: [&str; 12] =
    ["?", "hello", "heartbeat", "output", "commit", "discard", "failure", "end", "load", "loaded", "go", "running"];

impl Frame {
    fn kind(&self) -> u16 {
        match self {
            Frame::Hello { .. } => 1,
            Frame::Heartbeat { .. } => 2,
            Frame::Output { .. } => 3,
            Frame::Commit { .. } => 4,
            Frame::Discard => 5,
            Frame::Failure { .. } => 6,
            Frame::End { .. } => 7,
            Frame::Load { .. } => 8,
            Frame::Loaded { .. } => 9,
            Frame::Go { .. } => 10,
            Frame::Running { .. } => 11,
        }
    }

    /// The frame kind's name, for messages.
    pub fn name(&self) -> &'static str {
        NAMES[usize::from(self.kind())]
    }
}

fn kind_name(kind: u16) -> &'static str {
    NAMES.get(usize::from(kind)).copied().unwrap_or("?")
}

/// Appends the frame of `frame` to `out`. An `Output` frame's bytes must
/// fit in [`MAX_PAYLOAD`] (the sender splits longer output).
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let mut e = Encoder { buf: std::mem::take(out) };
    let start = FRAMING.begin(&mut e, frame.kind(), 0);
    match frame {
        Frame::Hello { pid, standby } => {
            e.u32(*pid).bool(*standby);
        }
        Frame::Heartbeat { seq, counters: c } => {
            e.u64(*seq);
            for n in c.exits {
                e.u64(n);
            }
            e.u64(c.checkpoints).u64(c.checkpoint_ns).u64(c.rollbacks).u64(c.watchdog_expiries);
        }
        Frame::Output { bytes } => {
            e.raw(bytes);
        }
        Frame::Commit { seq, path, exits, took_ns } => {
            e.u64(*seq).str(path).u64(*exits).u64(*took_ns);
        }
        Frame::Failure { status, cause, unix_ns } => {
            e.u8(*status).str(cause).u64(*unix_ns);
        }
        Frame::End { status } => {
            e.u8(*status);
        }
        Frame::Load { seq, path } => {
            e.u64(*seq).str(path);
        }
        Frame::Go { seq, path, attempt } => {
            e.u64(*seq).str(path).u32(*attempt);
        }
        Frame::Loaded { seq } | Frame::Running { seq } => {
            e.u64(*seq);
        }
        Frame::Discard => {}
    }
    Framing::finish(&mut e, start);
    *out = e.buf;
}

/// Checks a frame's header; returns the whole frame's length (header,
/// payload and CRC), so a reader knows how much more to wait for.
///
/// # Errors
///
/// A short header, another magic or version, an oversized payload.
pub fn frame_len(header: &[u8]) -> Result<usize, ChannelError> {
    Ok(FRAMING.frame_len(header)?)
}

/// Recomputes the checksum of the frame at the start of `bytes` after a
/// deliberate change (tests and the fuzz target; any input, no panic).
pub fn reseal(bytes: &mut [u8]) {
    FRAMING.reseal(bytes);
}

fn payload(kind: u16, d: &mut Decoder<'_>) -> Result<Frame, CodecError> {
    let text = |d: &mut Decoder<'_>, what| d.str(what, MAX_TEXT).map(str::to_string);
    Ok(match kind {
        1 => Frame::Hello { pid: d.u32("pid")?, standby: d.bool("standby flag")? },
        2 => {
            let seq = d.u64("heartbeat number")?;
            let mut exits = [0u64; COUNTED_KINDS];
            for n in &mut exits {
                *n = d.u64("exit count")?;
            }
            let counters = Counters {
                exits,
                checkpoints: d.u64("checkpoint count")?,
                checkpoint_ns: d.u64("checkpoint time")?,
                rollbacks: d.u64("rollback count")?,
                watchdog_expiries: d.u64("watchdog expiries")?,
            };
            Frame::Heartbeat { seq, counters }
        }
        3 => Frame::Output { bytes: d.take(d.remaining(), "output")?.to_vec() },
        4 => Frame::Commit {
            seq: d.u64("checkpoint number")?,
            path: text(d, "checkpoint path")?,
            exits: d.u64("exit count")?,
            took_ns: d.u64("checkpoint time")?,
        },
        5 => Frame::Discard,
        6 => Frame::Failure { status: d.u8("status")?, cause: text(d, "cause")?, unix_ns: d.u64("failure time")? },
        7 => Frame::End { status: d.u8("status")? },
        8 => Frame::Load { seq: d.u64("checkpoint number")?, path: text(d, "checkpoint path")? },
        9 => Frame::Loaded { seq: d.u64("checkpoint number")? },
        10 => Frame::Go {
            seq: d.u64("checkpoint number")?,
            path: text(d, "checkpoint path")?,
            attempt: d.u32("attempt")?,
        },
        11 => Frame::Running { seq: d.u64("checkpoint number")? },
        _ => return Err(CodecError::BadValue { what: "frame kind", value: u64::from(kind) }),
    })
}

/// Decodes the frame at the start of `bytes`; returns it and its length.
/// Pure: any input gives a frame or a named error.
///
/// # Errors
///
/// A [`ChannelError`] naming what is wrong with the frame.
pub fn decode(bytes: &[u8]) -> Result<(Frame, usize), ChannelError> {
    let frame = FRAMING.check(bytes)?;
    let (kind, total) = (frame.kind, frame.len);
    if !(1..NAMES.len() as u16).contains(&kind) {
        return Err(ChannelError::UnknownKind { kind });
    }
    let decode_err = |source| ChannelError::Decode { kind: kind_name(kind), source };
    let mut d = Decoder::new(frame.payload);
    let frame = payload(kind, &mut d).map_err(decode_err)?;
    d.finish("the frame's payload").map_err(decode_err)?;
    Ok((frame, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn samples() -> Vec<Frame> {
        let counters = Counters { exits: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], checkpoints: 11, ..Default::default() };
        vec![
            Frame::Hello { pid: 4242, standby: true },
            Frame::Heartbeat { seq: 7, counters },
            Frame::Output { bytes: b"count 1\ncount 2\n".to_vec() },
            Frame::Commit { seq: 3, path: "/tmp/d/ckpt-3".into(), exits: 900, took_ns: 123_456 },
            Frame::Discard,
            Frame::Failure { status: 73, cause: "triple fault".into(), unix_ns: 1 << 60 },
            Frame::End { status: 0 },
            Frame::Load { seq: 3, path: "/tmp/d/ckpt-3".into() },
            Frame::Loaded { seq: 3 },
            Frame::Go { seq: 3, path: "/tmp/d/ckpt-3".into(), attempt: 2 },
            Frame::Running { seq: 3 },
        ]
    }

    #[test]
    fn every_frame_survives_the_round_trip_and_frames_follow_each_other() {
        let mut stream = Vec::new();
        for f in samples() {
            encode(&f, &mut stream);
        }
        let mut at = 0;
        for f in samples() {
            let (back, n) = decode(&stream[at..]).unwrap();
            assert_eq!(back, f, "{}", f.name());
            at += n;
        }
        assert_eq!(at, stream.len());
    }

    #[test]
    fn a_cut_at_every_offset_and_every_flipped_bit_are_refused() {
        for f in samples() {
            let mut frame = Vec::new();
            encode(&f, &mut frame);
            for len in 0..frame.len() {
                assert!(decode(&frame[..len]).is_err(), "{} cut at {len} decoded", f.name());
            }
            for at in 0..frame.len() {
                for bit in 0..8 {
                    let mut g = frame.clone();
                    g[at] ^= 1 << bit;
                    assert!(decode(&g).is_err(), "{}: flipped bit {bit} of byte {at} went unnoticed", f.name());
                }
            }
        }
    }

    #[test]
    fn damaged_payloads_with_good_checksums_are_named_errors() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let samples = samples();
        for round in 0..20_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut frame = Vec::new();
            encode(&samples[round % samples.len()], &mut frame);
            let at = HEADER_LEN.min(frame.len() - 1) + (x as usize % frame.len().saturating_sub(HEADER_LEN).max(1));
            if let Some(b) = frame.get_mut(at) {
                *b = (x >> 32) as u8;
            }
            if round % 3 == 0 {
                frame.truncate(frame.len() - (x as usize % 5));
                let len = frame.len().saturating_sub(HEADER_LEN + 4) as u32;
                frame[8..12].copy_from_slice(&len.to_le_bytes());
            }
            reseal(&mut frame);
            match decode(&frame) {
                Ok((_, n)) => assert!(n <= frame.len()),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
        let mut bad = Vec::new();
        encode(&Frame::Discard, &mut bad);
        bad[6] = 99;
        reseal(&mut bad);
        assert_eq!(decode(&bad).unwrap_err(), ChannelError::UnknownKind { kind: 99 });
        bad[4] = 2;
        assert_eq!(decode(&bad).unwrap_err(), ChannelError::Version { found: 2 });
    }
}
