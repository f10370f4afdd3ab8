//! Byte-level building blocks of the snapshot format and the wire formats
//! (migration, supervision channel): little-endian encoding, a
//! bounds-checked decoder whose every failure names the field it was
//! reading, CRC-32C, the checksummed frame both wire formats use, and the
//! raw byte images of KVM's state structures.

/// Errors of decoding untrusted bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{what} is truncated: it needs {need} bytes at offset {at}, {have} are left")]
    Truncated { what: &'static str, at: usize, need: usize, have: usize },
    #[error("{what} holds {len} entries or bytes, more than the {max} this format allows")]
    TooLong { what: &'static str, len: u64, max: u64 },
    #[error("{what} has {extra} bytes left over after its last field")]
    Trailing { what: &'static str, extra: usize },
    #[error("{what} is not valid UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("{what} is {value}, which is not one of the values this format defines")]
    BadValue { what: &'static str, value: u64 },
}

/// Appends little-endian fields to a byte vector.
#[derive(Debug, Default)]
pub struct Encoder {
    pub buf: Vec<u8>,
}

impl Encoder {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    /// Bytes as they are, without a length.
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// A u32 length, then the bytes.
    pub fn blob(&mut self, v: &[u8]) -> &mut Self {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.raw(v)
    }
    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.blob(v.as_bytes())
    }
    /// The raw image of a KVM structure.
    pub fn pod<T: Pod>(&mut self, v: &T) -> &mut Self {
        self.raw(pod_bytes(v))
    }
}

/// Reads little-endian fields from untrusted bytes; never panics.
#[derive(Debug)]
pub struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Decoder { bytes, at: 0 }
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        let have = self.remaining();
        if n > have {
            return Err(CodecError::Truncated { what, at: self.at, need: n, have });
        }
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        self.array(what).map(u16::from_le_bytes)
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        self.array(what).map(u32::from_le_bytes)
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        self.array(what).map(u64::from_le_bytes)
    }
    pub fn bool(&mut self, what: &'static str) -> Result<bool, CodecError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(CodecError::BadValue { what, value: u64::from(v) }),
        }
    }
    /// A count of entries, at most `max`.
    pub fn count(&mut self, what: &'static str, max: u64) -> Result<usize, CodecError> {
        let len = self.u32(what)?;
        if u64::from(len) > max {
            return Err(CodecError::TooLong { what, len: u64::from(len), max });
        }
        Ok(len as usize)
    }
    /// A u32-length-prefixed byte string of at most `max` bytes.
    pub fn blob(&mut self, what: &'static str, max: u64) -> Result<&'a [u8], CodecError> {
        let len = self.count(what, max)?;
        self.take(len, what)
    }
    /// A length-prefixed UTF-8 string of at most `max` bytes.
    pub fn str(&mut self, what: &'static str, max: u64) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.blob(what, max)?).map_err(|_| CodecError::NotUtf8 { what })
    }
    /// A KVM structure from its raw image.
    pub fn pod<T: Pod>(&mut self, what: &'static str) -> Result<T, CodecError> {
        let bytes = self.take(std::mem::size_of::<T>(), what)?;
        Ok(pod_from_bytes(bytes))
    }
    /// Fails if anything is left: every byte of a section must be accounted for.
    pub fn finish(&self, what: &'static str) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(CodecError::Trailing { what, extra }),
        }
    }
}

/// Plain-old-data KVM structures whose raw bytes are their encoding.
///
/// # Safety
///
/// An implementor must be `#[repr(C)]`, have no padding (every byte belongs
/// to a field) and accept every bit pattern (integers and arrays or unions
/// of integers only).
pub unsafe trait Pod: Copy {}

// SAFETY: each of these kernel UAPI structures is #[repr(C)] and made of
// integers, arrays and unions of integers with explicit padding fields;
// kvm-bindings derives zerocopy's IntoBytes and FromBytes for each one
// (under its `serde` feature), which proves both properties at compile time.
unsafe impl Pod for kvm_bindings::kvm_regs {}
// SAFETY: as above.
unsafe impl Pod for kvm_bindings::kvm_sregs {}
// SAFETY: as above.
unsafe impl Pod for kvm_bindings::kvm_lapic_state {}
// SAFETY: as above.
unsafe impl Pod for kvm_bindings::kvm_xcrs {}
// SAFETY: as above.
unsafe impl Pod for kvm_bindings::kvm_debugregs {}
// SAFETY: as above.
unsafe impl Pod for kvm_bindings::kvm_vcpu_events {}
// SAFETY: as above.
unsafe impl Pod for kvm_bindings::kvm_mp_state {}
// SAFETY: as above.
unsafe impl Pod for kvm_bindings::kvm_irqchip {}
// SAFETY: as above.
unsafe impl Pod for kvm_bindings::kvm_pit_state2 {}
// SAFETY: as above.
unsafe impl Pod for kvm_bindings::kvm_clock_data {}
// SAFETY: as above.
unsafe impl Pod for kvm_bindings::kvm_cpuid_entry2 {}

/// The bytes of `v`.
pub fn pod_bytes<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: `T: Pod` has no padding, so all size_of::<T>() bytes behind the
    // reference are initialized; the slice borrows `v`.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// A `T` from exactly `size_of::<T>()` bytes (the caller takes them so).
fn pod_from_bytes<T: Pod>(bytes: &[u8]) -> T {
    assert_eq!(bytes.len(), std::mem::size_of::<T>(), "Decoder::pod takes exactly the size");
    // SAFETY: the slice holds size_of::<T>() initialized bytes (checked above;
    // `Decoder::take` guarantees it), every bit pattern is a valid `T`, and
    // read_unaligned has no alignment requirement.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

/// Bytes of a frame's header: magic u32, version u16, kind u16, payload
/// length u32 (all little-endian); the payload follows, then the CRC-32C of
/// everything before it.
pub const FRAME_HEADER: usize = 12;

/// One framed protocol: its magic, version and largest payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    pub magic: u32,
    pub version: u16,
    pub max_payload: usize,
}

/// What is wrong with a frame as a frame (its payload aside); each protocol
/// turns it into its own error, with its own words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameFault {
    Truncated { need: usize, have: usize },
    BadMagic { found: u32 },
    Version { found: u16 },
    TooLong { len: usize },
    Checksum { stored: u32, computed: u32 },
}

/// A frame that passed its checks: its kind, its payload, its whole length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedFrame<'a> {
    pub kind: u16,
    pub payload: &'a [u8],
    pub len: usize,
}

impl Framing {
    /// Appends the header of a `kind` frame whose payload is `payload_len`
    /// bytes (0 if [`Framing::finish`] is to fill it in); returns where the
    /// frame starts.
    pub fn begin(&self, e: &mut Encoder, kind: u16, payload_len: u32) -> usize {
        let start = e.buf.len();
        e.u32(self.magic).u16(self.version).u16(kind).u32(payload_len);
        start
    }

    /// Ends the frame that starts at `start`: its payload length from what
    /// follows the header, then the CRC.
    pub fn finish(e: &mut Encoder, start: usize) {
        let len = u32::try_from(e.buf.len() - start - FRAME_HEADER).unwrap_or(u32::MAX);
        e.buf[start + 8..start + 12].copy_from_slice(&len.to_le_bytes());
        Self::seal(&mut e.buf, start);
    }

    /// Appends the CRC of the frame that starts at `start` (its header
    /// already holds the payload's length).
    pub fn seal(out: &mut Vec<u8>, start: usize) {
        let crc = crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// Checks a frame's header; returns the whole frame's length (header,
    /// payload and CRC), so a reader knows how much more to wait for.
    ///
    /// # Errors
    ///
    /// A short header, another magic or version, an oversized payload.
    pub fn frame_len(&self, header: &[u8]) -> Result<usize, FrameFault> {
        if header.len() < FRAME_HEADER {
            return Err(FrameFault::Truncated { need: FRAME_HEADER, have: header.len() });
        }
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if magic != self.magic {
            return Err(FrameFault::BadMagic { found: magic });
        }
        let version = u16::from_le_bytes([header[4], header[5]]);
        if version != self.version {
            return Err(FrameFault::Version { found: version });
        }
        let len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
        if len > self.max_payload {
            return Err(FrameFault::TooLong { len });
        }
        Ok(FRAME_HEADER + len + 4)
    }

    /// Checks the frame at the start of `bytes`: header, length, CRC.
    ///
    /// # Errors
    ///
    /// What [`Framing::frame_len`] finds, a frame cut short, a bad CRC.
    pub fn check<'a>(&self, bytes: &'a [u8]) -> Result<CheckedFrame<'a>, FrameFault> {
        let total = self.frame_len(bytes)?;
        if bytes.len() < total {
            return Err(FrameFault::Truncated { need: total, have: bytes.len() });
        }
        let stored = u32::from_le_bytes([bytes[total - 4], bytes[total - 3], bytes[total - 2], bytes[total - 1]]);
        let computed = crc32c(&bytes[..total - 4]);
        if stored != computed {
            return Err(FrameFault::Checksum { stored, computed });
        }
        let kind = u16::from_le_bytes([bytes[6], bytes[7]]);
        Ok(CheckedFrame { kind, payload: &bytes[FRAME_HEADER..total - 4], len: total })
    }

    /// Recomputes the checksum of the frame at the start of `bytes` after a
    /// deliberate change, so that the change reaches the payload's decoder
    /// (tests and the fuzz targets; any input, no panic).
    pub fn reseal(&self, bytes: &mut [u8]) {
        let Ok(total) = self.frame_len(bytes) else { return };
        if let Some(frame) = bytes.get_mut(..total) {
            let crc = crc32c(&frame[..total - 4]);
            frame[total - 4..].copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// The CRC-32C (Castagnoli) of `data`, as iSCSI, ext4 and SCTP use it.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// Continues a CRC-32C: `crc32c_append(crc32c(a), b) == crc32c(a ++ b)`.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE4.2 (checked just above), which is all
        // `crc32c_sse42` needs.
        return unsafe { crc32c_sse42(crc, data) };
    }
    crc32c_table(crc, data)
}

#[target_feature(enable = "sse4.2")]
fn crc32c_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut c = u64::from(!crc);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        c = _mm_crc32_u64(c, u64::from_le_bytes(b));
    }
    let mut c = c as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    !c
}

const CRC32C_POLY: u32 = 0x82f6_3b78; // reflected Castagnoli polynomial

const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ CRC32C_POLY } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

fn crc32c_table(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = CRC32C_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value_in_both_implementations() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c_table(0, b"123456789"), 0xe306_9283);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        assert_eq!(crc32c(&data), crc32c_table(0, &data));
        assert_eq!(crc32c_append(crc32c(&data[..333]), &data[333..]), crc32c(&data));
        assert_eq!(crc32c(&[]), 0);
    }

    #[test]
    fn the_decoder_names_what_it_could_not_read() {
        let mut e = Encoder::default();
        e.u32(7).str("uart").u64(9).bool(true);
        let mut d = Decoder::new(&e.buf);
        assert_eq!(d.u32("count").unwrap(), 7);
        assert_eq!(d.str("name", 16).unwrap(), "uart");
        assert_eq!(d.u64("value").unwrap(), 9);
        assert!(d.bool("flag").unwrap());
        d.finish("record").unwrap();
        let err = Decoder::new(&e.buf[..6]).u64("the magic").unwrap_err();
        assert_eq!(err.to_string(), "the magic is truncated: it needs 8 bytes at offset 0, 6 are left");
        let mut d = Decoder::new(&e.buf);
        d.u32("count").unwrap();
        assert!(matches!(d.str("name", 2), Err(CodecError::TooLong { len: 4, max: 2, .. })));
        assert!(matches!(Decoder::new(&[2]).bool("flag"), Err(CodecError::BadValue { value: 2, .. })));
        assert!(matches!(Decoder::new(&[1, 2]).finish("x"), Err(CodecError::Trailing { extra: 2, .. })));
    }

    #[test]
    fn kvm_structures_round_trip_through_their_raw_bytes() {
        let regs = kvm_bindings::kvm_regs { rip: 0x1234, rflags: 2, r15: u64::MAX, ..Default::default() };
        let mut e = Encoder::default();
        e.pod(&regs);
        assert_eq!(e.buf.len(), std::mem::size_of::<kvm_bindings::kvm_regs>());
        let back: kvm_bindings::kvm_regs = Decoder::new(&e.buf).pod("regs").unwrap();
        assert_eq!(back, regs);
    }
}
