//! The migration wire format: a stream of frames, each
//!
//! ```text
//! magic "VLMG" u32 | version u16 (1) | kind u16 | payload length u32 | payload | CRC-32C u32
//! ```
//!
//! (little-endian; the CRC covers the header and the payload). [`decode`]
//! is a pure function over untrusted bytes: a bad frame is a named
//! [`WireError`], never a panic. The conversation:
//!
//! ```text
//! source                          destination
//! Hello {machine} ───────────────►  creates a blank VM
//!                 ◄─────────────── Accept | Refuse {reason}
//! Pages {round, first, data} ────►  (pre-copy rounds, then the stop-and-copy round)
//! State {snapshot bytes} ────────►  (the paused vCPU, irqchip, PIT, clock, devices)
//! Done {pages} ──────────────────►  loads the state
//!                 ◄─────────────── Ready
//! Go ────────────────────────────►  commits: the guest is the destination's now
//!                 ◄─────────────── Resumed          (the source then exits, status 80)
//! ```

use crate::codec::{CodecError, Decoder, Encoder, FrameFault, Framing, FRAME_HEADER};
use crate::snapshot::state::{Machine, PAGE_SIZE};

/// The first four bytes of every frame.
pub const MAGIC: u32 = u32::from_le_bytes(*b"VLMG");
/// The protocol version this VMM speaks.
pub const VERSION: u16 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = FRAME_HEADER;
/// Most pages in one `Pages` frame.
pub const PAGES_PER_FRAME: u64 = 256;
/// Largest payload a frame may have.
pub const MAX_PAYLOAD: usize = 2 << 20;
const MAX_TEXT: u64 = 4096;

/// The migration stream's frames.
const FRAMING: Framing = Framing { magic: MAGIC, version: VERSION, max_payload: MAX_PAYLOAD };

/// Errors of decoding a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the frame is truncated: it needs {need} bytes, {have} arrived")]
    Truncated { need: usize, have: usize },
    #[error("not a virtlab migration stream: a frame starts with {found:#010x}, not \"VLMG\"")]
    BadMagic { found: u32 },
    #[error("the peer speaks migration protocol version {found}, this vmm speaks version {VERSION} only")]
    Version { found: u16 },
    #[error("a frame of {len} bytes is larger than the {MAX_PAYLOAD} this protocol allows")]
    TooLong { len: usize },
    #[error("frame checksum mismatch: the frame says {stored:#010x}, its bytes give {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("unknown frame kind {kind}")]
    UnknownKind { kind: u16 },
    #[error("a pages frame carries {len} bytes of page data: not a whole number of 1 to {PAGES_PER_FRAME} pages")]
    BadPages { len: usize },
    #[error("cannot decode a {kind} frame")]
    Decode {
        kind: &'static str,
        #[source]
        source: CodecError,
    },
}

impl From<FrameFault> for WireError {
    fn from(f: FrameFault) -> Self {
        match f {
            FrameFault::Truncated { need, have } => WireError::Truncated { need, have },
            FrameFault::BadMagic { found } => WireError::BadMagic { found },
            FrameFault::Version { found } => WireError::Version { found },
            FrameFault::TooLong { len } => WireError::TooLong { len },
            FrameFault::Checksum { stored, computed } => WireError::Checksum { stored, computed },
        }
    }
}

/// One frame's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// The source offers a guest with these options.
    Hello { machine: Machine },
    /// The destination has created a blank VM for it.
    Accept,
    /// The destination cannot take the guest.
    Refuse { reason: &'a str },
    /// Consecutive pages from page `first`, in pre-copy round `round`.
    Pages { round: u32, first: u64, data: &'a [u8] },
    /// The paused machine's state, in the snapshot state-file format.
    State { snapshot: &'a [u8] },
    /// Everything is sent: `pages` pages in all.
    Done { pages: u64 },
    /// The destination has loaded the state and waits for `Go`.
    Ready,
    /// The source gives the guest up: run it.
    Go,
    /// The destination runs the guest.
    Resumed,
}

impl Message<'_> {
    fn kind(&self) -> u16 {
        match self {
            Message::Hello { .. } => 1,
            Message::Accept => 2,
            Message::Refuse { .. } => 3,
            Message::Pages { .. } => 4,
            Message::State { .. } => 5,
            Message::Done { .. } => 6,
            Message::Ready => 7,
            Message::Go => 8,
            Message::Resumed => 9,
        }
    }

    /// The frame kind's name, for messages.
    pub fn name(&self) -> &'static str {
        kind_name(self.kind())
    }
}

fn kind_name(kind: u16) -> &'static str {
    ["?", "hello", "accept", "refuse", "pages", "state", "done", "ready", "go", "resumed"]
        .get(kind as usize)
        .copied()
        .unwrap_or("?")
}

/// Appends the frame of `msg` to `out`.
pub fn encode(msg: &Message<'_>, out: &mut Vec<u8>) {
    let mut e = Encoder { buf: std::mem::take(out) };
    let start = FRAMING.begin(&mut e, msg.kind(), 0);
    match msg {
        Message::Hello { machine } => {
            e.u64(machine.ram_mib).bool(machine.timers).u32(machine.vcpus);
        }
        Message::Refuse { reason } => {
            e.str(reason);
        }
        Message::Pages { round, first, data } => {
            e.u32(*round).u64(*first).raw(data);
        }
        Message::State { snapshot } => {
            e.raw(snapshot);
        }
        Message::Done { pages } => {
            e.u64(*pages);
        }
        Message::Accept | Message::Ready | Message::Go | Message::Resumed => {}
    }
    Framing::finish(&mut e, start);
    *out = e.buf;
}

/// Starts a `Pages` frame of `count` pages from page `first` at the end of
/// `out` and returns the range of `out` where the page data goes; fill it,
/// then [`seal`] the frame. (The source copies guest memory straight into
/// the frame this way.)
pub fn begin_pages(out: &mut Vec<u8>, round: u32, first: u64, count: u64) -> std::ops::Range<usize> {
    let data_len = (count * PAGE_SIZE) as usize;
    let mut e = Encoder { buf: std::mem::take(out) };
    FRAMING.begin(&mut e, 4, (12 + data_len) as u32);
    e.u32(round).u64(first);
    let start = e.buf.len();
    e.buf.resize(start + data_len, 0);
    *out = e.buf;
    start..start + data_len
}

/// Ends the frame that starts at `start` in `out` with its CRC.
pub fn seal(out: &mut Vec<u8>, start: usize) {
    Framing::seal(out, start);
}

/// Checks a frame's header; returns the whole frame's length (header,
/// payload and CRC), so a reader knows how much more to read.
///
/// # Errors
///
/// A short header, another magic or version, an oversized payload.
pub fn frame_len(header: &[u8]) -> Result<usize, WireError> {
    Ok(FRAMING.frame_len(header)?)
}

/// Recomputes the checksum of the frame at the start of `bytes` after a
/// deliberate change, so that the change reaches the payload's decoder
/// (for tests and the fuzz target; any input, no panic).
pub fn reseal(bytes: &mut [u8]) {
    FRAMING.reseal(bytes);
}

/// Decodes the frame at the start of `bytes`; returns it and its length.
/// Pure: any input gives a message or a named error.
///
/// # Errors
///
/// A [`WireError`] naming what is wrong with the frame.
pub fn decode(bytes: &[u8]) -> Result<(Message<'_>, usize), WireError> {
    let frame = FRAMING.check(bytes)?;
    let (kind, total) = (frame.kind, frame.len);
    let payload = frame.payload;
    let decode_err = |source| WireError::Decode { kind: kind_name(kind), source };
    let mut d = Decoder::new(payload);
    let msg = match kind {
        1 => {
            let machine = (|| {
                Ok(Machine { ram_mib: d.u64("RAM size")?, timers: d.bool("timers flag")?, vcpus: d.u32("vCPU count")? })
            })()
            .map_err(decode_err)?;
            Message::Hello { machine }
        }
        2 => Message::Accept,
        3 => Message::Refuse { reason: d.str("reason", MAX_TEXT).map_err(decode_err)? },
        4 => {
            let round = d.u32("round").map_err(decode_err)?;
            let first = d.u64("first page").map_err(decode_err)?;
            let data = d.take(d.remaining(), "page data").map_err(decode_err)?;
            let pages = data.len() as u64 / PAGE_SIZE;
            if data.is_empty() || data.len() as u64 & (PAGE_SIZE - 1) != 0 || pages > PAGES_PER_FRAME {
                return Err(WireError::BadPages { len: data.len() });
            }
            Message::Pages { round, first, data }
        }
        5 => Message::State { snapshot: d.take(d.remaining(), "state").map_err(decode_err)? },
        6 => Message::Done { pages: d.u64("page count").map_err(decode_err)? },
        7 => Message::Ready,
        8 => Message::Go,
        9 => Message::Resumed,
        kind => return Err(WireError::UnknownKind { kind }),
    };
    d.finish("the frame's payload").map_err(decode_err)?;
    Ok((msg, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::crc32c;

    fn samples() -> Vec<Vec<u8>> {
        let page = vec![0xabu8; 4096 * 2];
        let state = crate::snapshot::format::encode(&crate::snapshot::tests::sample(true));
        let msgs = [
            Message::Hello { machine: Machine { ram_mib: 128, timers: true, vcpus: 1 } },
            Message::Accept,
            Message::Refuse { reason: "no room" },
            Message::Pages { round: 3, first: 0x100, data: &page },
            Message::State { snapshot: &state },
            Message::Done { pages: 42 },
            Message::Ready,
            Message::Go,
            Message::Resumed,
        ];
        msgs.iter()
            .map(|m| {
                let mut out = Vec::new();
                encode(m, &mut out);
                out
            })
            .collect()
    }

    #[test]
    fn every_message_survives_the_round_trip() {
        let page = vec![0xabu8; 4096 * 2];
        let mut stream = Vec::new();
        encode(&Message::Pages { round: 3, first: 0x100, data: &page }, &mut stream);
        encode(&Message::Go, &mut stream);
        let (first, n) = decode(&stream).unwrap();
        assert_eq!(first, Message::Pages { round: 3, first: 0x100, data: &page });
        assert_eq!(decode(&stream[n..]).unwrap(), (Message::Go, stream.len() - n));
        for frame in samples() {
            let (msg, n) = decode(&frame).unwrap();
            assert_eq!(n, frame.len());
            let mut again = Vec::new();
            encode(&msg, &mut again);
            assert_eq!(again, frame, "{}", msg.name());
        }
    }

    #[test]
    fn a_frame_built_in_place_is_the_encoded_frame() {
        let page = vec![0x5au8; 4096 * 3];
        let mut expected = Vec::new();
        encode(&Message::Pages { round: 2, first: 7, data: &page }, &mut expected);
        let mut built = Vec::new();
        let range = begin_pages(&mut built, 2, 7, 3);
        built[range].copy_from_slice(&page);
        seal(&mut built, 0);
        assert_eq!(built, expected);
    }

    #[test]
    fn a_cut_at_every_offset_and_every_flipped_bit_are_refused() {
        for frame in samples() {
            for len in 0..frame.len() {
                assert!(decode(&frame[..len]).is_err(), "a frame cut at {len} decoded");
            }
            for at in 0..frame.len().min(64) {
                for bit in 0..8 {
                    let mut f = frame.clone();
                    f[at] ^= 1 << bit;
                    let e = decode(&f).expect_err("a flipped bit went unnoticed");
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }

    #[test]
    fn random_frames_and_mutations_are_named_errors_and_never_panic() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let samples = samples();
        for round in 0..20_000u64 {
            let mut f = samples[(round % samples.len() as u64) as usize].clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() % f.len() as u64) as usize;
                f[at] = next() as u8;
            }
            // Half the time, repair the length and checksum so the payload decoder sees the damage.
            if round % 2 == 0 && f.len() >= HEADER_LEN + 4 {
                let len = (f.len() - HEADER_LEN - 4) as u32;
                f[8..12].copy_from_slice(&len.to_le_bytes());
                f[..4].copy_from_slice(&MAGIC.to_le_bytes());
                f[4..6].copy_from_slice(&VERSION.to_le_bytes());
                let n = f.len();
                let crc = crc32c(&f[..n - 4]);
                f[n - 4..].copy_from_slice(&crc.to_le_bytes());
            }
            match decode(&f) {
                Ok((_, n)) => assert!(n <= f.len()),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
        assert_eq!(decode(&[0xff; 16]).unwrap_err(), WireError::BadMagic { found: 0xffff_ffff });
        let mut v = samples[1].clone();
        v[4] = 9;
        assert_eq!(decode(&v).unwrap_err(), WireError::Version { found: 9 });
    }
}
