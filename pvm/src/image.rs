//! The `.pbc` binary image: a header, section headers, then the payloads.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "PVMB"
//! 4       2     version (1)
//! 6       2     number of sections (the first is the code section)
//! 8       8     entry address
//! 16      24*n  sections: kind u32 (1 code, 2 data, 3 reserved), reserved u32, address u64, length u64
//! ...           payloads, in section order (a reserved range has none)
//! ```
//! All little-endian. A reserved range is memory the program owns, zero at
//! the start (a WebAssembly linear memory): the stack may not grow into it.

/// Where the assembler puts the code section.
pub const CODE_BASE: u64 = 0x1000;
pub const MAGIC: &[u8; 4] = b"PVMB";
pub const VERSION: u16 = 1;
const KIND_CODE: u32 = 1;
const KIND_DATA: u32 = 2;
const KIND_RESERVED: u32 = 3;
const HEADER: usize = 16;
const SECTION_HEADER: usize = 24;

/// One contiguous range of initialised memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub addr: u64,
    pub bytes: Vec<u8>,
}

/// A range of memory the program owns without initialising it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserved {
    pub addr: u64,
    pub len: u64,
}

/// A program: entry, code section, data sections, reserved ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub entry: u64,
    pub code: Section,
    pub data: Vec<Section>,
    /// Zero-filled ranges (data sections may lie inside them).
    pub reserved: Vec<Reserved>,
}

/// Errors reading a `.pbc` file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("not a pvm image: the file does not start with \"PVMB\"")]
    BadMagic,
    #[error("image version {0} is not supported (this pvm reads version {VERSION})")]
    BadVersion(u16),
    #[error("image is truncated at offset {0}")]
    Truncated(usize),
    #[error("section {index} has unknown kind {kind}")]
    BadSectionKind { index: usize, kind: u32 },
    #[error("the first section must be the code section, and only it; reserved ranges come last")]
    CodeSection,
    #[error("image has {0} bytes after its last section")]
    TrailingBytes(usize),
}

impl Image {
    /// An image from its parts.
    pub fn new(entry: u64, code: Section, data: Vec<Section>) -> Self {
        Image { entry, code, data, reserved: Vec::new() }
    }

    /// The end of the highest section or reserved range: where the stack
    /// must stop.
    pub fn end(&self) -> u64 {
        let sections = self.sections().map(|s| s.addr.saturating_add(s.bytes.len() as u64));
        sections.chain(self.reserved.iter().map(|r| r.addr.saturating_add(r.len))).max().unwrap_or(0)
    }

    /// Code first, then data.
    pub fn sections(&self) -> impl Iterator<Item = &Section> {
        std::iter::once(&self.code).chain(&self.data)
    }

    /// The `.pbc` encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = 1 + self.data.len() + self.reserved.len();
        let mut out = Vec::new();
        out.extend(MAGIC);
        out.extend(VERSION.to_le_bytes());
        out.extend((n as u16).to_le_bytes());
        out.extend(self.entry.to_le_bytes());
        for (i, s) in self.sections().enumerate() {
            out.extend((if i == 0 { KIND_CODE } else { KIND_DATA }).to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(s.addr.to_le_bytes());
            out.extend((s.bytes.len() as u64).to_le_bytes());
        }
        for r in &self.reserved {
            out.extend(KIND_RESERVED.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(r.addr.to_le_bytes());
            out.extend(r.len.to_le_bytes());
        }
        for s in self.sections() {
            out.extend(&s.bytes);
        }
        out
    }

    /// True if `bytes` look like a `.pbc` file.
    pub fn is_image(bytes: &[u8]) -> bool {
        bytes.starts_with(MAGIC)
    }

    /// Parses a `.pbc` file. Structure only: [`crate::verify`] checks the code.
    pub fn from_bytes(bytes: &[u8]) -> Result<Image, ImageError> {
        let get =
            |at: usize, n: usize| at.checked_add(n).and_then(|end| bytes.get(at..end)).ok_or(ImageError::Truncated(at));
        let u16_at = |at| get(at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |at| get(at, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let u64_at = |at| get(at, 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
        if get(0, 4)? != MAGIC {
            return Err(ImageError::BadMagic);
        }
        let version = u16_at(4)?;
        if version != VERSION {
            return Err(ImageError::BadVersion(version));
        }
        let n = usize::from(u16_at(6)?);
        let entry = u64_at(8)?;
        let mut payload = HEADER + n * SECTION_HEADER;
        let mut sections = Vec::with_capacity(n);
        let mut reserved = Vec::new();
        for index in 0..n {
            let h = HEADER + index * SECTION_HEADER;
            let kind = u32_at(h)?;
            match (index, kind) {
                (1.., KIND_RESERVED) => {
                    reserved.push(Reserved { addr: u64_at(h + 8)?, len: u64_at(h + 16)? });
                    continue;
                }
                (0, KIND_CODE) | (1.., KIND_DATA) if reserved.is_empty() => {}
                (_, KIND_CODE | KIND_DATA) => return Err(ImageError::CodeSection),
                _ => return Err(ImageError::BadSectionKind { index, kind }),
            }
            let addr = u64_at(h + 8)?;
            let len = usize::try_from(u64_at(h + 16)?).map_err(|_| ImageError::Truncated(payload))?;
            sections.push(Section { addr, bytes: get(payload, len)?.to_vec() });
            payload += len;
        }
        if payload != bytes.len() {
            return Err(ImageError::TrailingBytes(bytes.len().saturating_sub(payload)));
        }
        let mut sections = sections.into_iter();
        let code = sections.next().ok_or(ImageError::CodeSection)?;
        Ok(Image { entry, code, data: sections.collect(), reserved })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Image {
        Image::new(
            CODE_BASE,
            Section { addr: CODE_BASE, bytes: vec![0; 16] },
            vec![Section { addr: 0x2000, bytes: b"hello".to_vec() }],
        )
    }

    #[test]
    fn round_trips() {
        let bytes = sample().to_bytes();
        assert!(Image::is_image(&bytes));
        assert_eq!(Image::from_bytes(&bytes), Ok(sample()));
    }

    #[test]
    fn reserved_ranges_round_trip_and_count_in_the_end() {
        let mut image = sample();
        image.reserved.push(Reserved { addr: 0x10000, len: 0x20000 });
        assert_eq!(image.end(), 0x30000);
        assert_eq!(Image::from_bytes(&image.to_bytes()), Ok(image));
        assert_eq!(sample().end(), 0x2005);
    }

    #[test]
    fn malformed_files_are_errors() {
        let bytes = sample().to_bytes();
        assert_eq!(Image::from_bytes(b"ELF!"), Err(ImageError::BadMagic));
        for cut in 0..bytes.len() {
            assert!(Image::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut v2 = bytes.clone();
        v2[4] = 2;
        assert_eq!(Image::from_bytes(&v2), Err(ImageError::BadVersion(2)));
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(Image::from_bytes(&extra), Err(ImageError::TrailingBytes(1)));
        let mut kind = bytes;
        kind[16] = 9;
        assert_eq!(Image::from_bytes(&kind), Err(ImageError::BadSectionKind { index: 0, kind: 9 }));
    }
}
