//! A structure-aware ELF mutator for the loader target: it starts from a
//! valid image (a built-in guest, or a minimal ELF64 with a PVH note made
//! here) and changes header, program-header and note fields by name, adds
//! notes, overwrites and truncates. Random bytes almost never get past the
//! ELF header's checks; edited fields of valid images reach the program
//! header and note parsers on most executions.
//!
//! Also a lenient reader of the same fields (it never fails: a field past
//! the end reads as `None`), which the target uses to state what a
//! successful load must have done.

use arbitrary::Arbitrary;

pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;
/// `XEN_ELFNOTE_PHYS32_ENTRY`.
pub const NT_PHYS32_ENTRY: u32 = 18;

/// A valid image to start from.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// `hello`: ELF32 with a PVH note.
    Hello,
    /// `exits`: ELF32 with a PVH note.
    Exits,
    /// `hello64` linked as ELF64, no note.
    Hello64,
    /// [`minimal64_pvh`]: ELF64 with a PVH note of 8 bytes.
    Minimal64Pvh,
}

impl Base {
    pub const ALL: [Base; 4] = [Base::Hello, Base::Exits, Base::Hello64, Base::Minimal64Pvh];

    /// The image's bytes.
    pub fn bytes(self) -> Vec<u8> {
        let guest = |name| guests::find(name).map(|g| g.image.to_vec()).unwrap_or_default();
        match self {
            Base::Hello => guest("hello"),
            Base::Exits => guest("exits"),
            Base::Hello64 => guests::HELLO64_ELF.to_vec(),
            Base::Minimal64Pvh => minimal64_pvh(),
        }
    }
}

/// Where the fields of one ELF class are.
#[derive(Clone, Copy, Debug)]
struct Layout {
    is64: bool,
}

/// A header field (`e_*`; `Class` and `Data` are `e_ident[4]`, `[5]`).
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum HeaderField {
    Class,
    Data,
    Machine,
    Entry,
    Phoff,
    Phentsize,
    Phnum,
}

/// A program header field (`p_*`).
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum ProgramField {
    Type,
    Flags,
    Offset,
    Vaddr,
    Paddr,
    Filesz,
    Memsz,
    Align,
}

impl Layout {
    /// (offset, width) of a header field.
    fn header(self, f: HeaderField) -> (u64, usize) {
        let w = if self.is64 { 8 } else { 4 };
        match f {
            HeaderField::Class => (4, 1),
            HeaderField::Data => (5, 1),
            HeaderField::Machine => (0x12, 2),
            HeaderField::Entry => (0x18, w),
            HeaderField::Phoff => (if self.is64 { 0x20 } else { 0x1c }, w),
            HeaderField::Phentsize => (if self.is64 { 0x36 } else { 0x2a }, 2),
            HeaderField::Phnum => (if self.is64 { 0x38 } else { 0x2c }, 2),
        }
    }

    /// (offset within the entry, width) of a program header field.
    fn program(self, f: ProgramField) -> (u64, usize) {
        if self.is64 {
            match f {
                ProgramField::Type => (0, 4),
                ProgramField::Flags => (4, 4),
                ProgramField::Offset => (8, 8),
                ProgramField::Vaddr => (16, 8),
                ProgramField::Paddr => (24, 8),
                ProgramField::Filesz => (32, 8),
                ProgramField::Memsz => (40, 8),
                ProgramField::Align => (48, 8),
            }
        } else {
            let at = match f {
                ProgramField::Type => 0,
                ProgramField::Offset => 4,
                ProgramField::Vaddr => 8,
                ProgramField::Paddr => 12,
                ProgramField::Filesz => 16,
                ProgramField::Memsz => 20,
                ProgramField::Flags => 24,
                ProgramField::Align => 28,
            };
            (at, 4)
        }
    }
}

/// A new value for a field, mostly the values parsers get wrong.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Value {
    Zero,
    One,
    Small(u8),
    /// The field's current value plus this.
    Delta(i16),
    /// The file's length (plus a small amount).
    FileLen(i8),
    /// The end of guest RAM (plus a small amount).
    RamEnd(i16),
    /// 1 MiB plus this many pages.
    KernelPage(u8),
    /// All ones (in the field's width).
    Max,
    /// All ones minus a little: sums with it overflow.
    NearMax(u8),
    Raw(u64),
}

/// A name for an added note.
#[derive(Arbitrary, Clone, Debug)]
pub enum NoteName {
    /// `"Xen\0"`, the PVH owner.
    Xen,
    /// `"Xen"` without its NUL.
    XenNoNul,
    /// `"GNU\0"`.
    Gnu,
    Raw(Vec<u8>),
}

/// One edit of an image.
#[derive(Arbitrary, Clone, Debug)]
pub enum Mutation {
    Header {
        field: HeaderField,
        value: Value,
    },
    Program {
        index: u8,
        field: ProgramField,
        value: Value,
    },
    /// Overwrites 32-bit word `word` of a PT_NOTE segment's contents.
    NoteWord {
        segment: u8,
        word: u8,
        value: Value,
    },
    /// Appends a note to the file and points program header `index` at it
    /// as a PT_NOTE (or grows the segment of the note added just before, so
    /// that one segment holds several notes).
    AddNote {
        index: u8,
        grow_previous: bool,
        name: NoteName,
        pvh_kind: bool,
        kind: u32,
        desc: Vec<u8>,
        namesz: Option<u32>,
        descsz: Option<u32>,
    },
    Overwrite {
        offset: u16,
        bytes: Vec<u8>,
    },
    Truncate {
        len: u16,
    },
}

/// An image being edited.
#[derive(Debug)]
pub struct Editor {
    pub bytes: Vec<u8>,
    layout: Layout,
    ram: u64,
    /// Program header index and file offset of the last note added.
    last_note: Option<(u64, u64)>,
}

impl Editor {
    /// Starts from `base`; `ram` is the guest RAM size `RamEnd` refers to.
    pub fn new(base: Base, ram: u64) -> Self {
        let bytes = base.bytes();
        let is64 = bytes.get(4) == Some(&2);
        Editor { bytes, layout: Layout { is64 }, ram, last_note: None }
    }

    fn read(&self, at: u64, width: usize) -> Option<u64> {
        read_le(&self.bytes, at, width)
    }

    fn write(&mut self, at: u64, width: usize, value: u64) {
        let Some(at) = usize::try_from(at).ok() else { return };
        if let Some(dst) = at.checked_add(width).and_then(|end| self.bytes.get_mut(at..end)) {
            dst.copy_from_slice(&value.to_le_bytes()[..width]);
        }
    }

    fn resolve(&self, value: Value, current: u64, width: usize) -> u64 {
        let mask = if width >= 8 { u64::MAX } else { (1u64 << (8 * width)) - 1 };
        let v = match value {
            Value::Zero => 0,
            Value::One => 1,
            Value::Small(n) => u64::from(n),
            Value::Delta(d) => current.wrapping_add_signed(i64::from(d)),
            Value::FileLen(d) => (self.bytes.len() as u64).wrapping_add_signed(i64::from(d)),
            Value::RamEnd(d) => self.ram.wrapping_add_signed(i64::from(d)),
            Value::KernelPage(n) => 0x10_0000 + u64::from(n) * 0x1000,
            Value::Max => u64::MAX,
            Value::NearMax(n) => u64::MAX - u64::from(n),
            Value::Raw(v) => v,
        };
        v & mask
    }

    /// The program headers' table as the header now says: (offset, entry size, count).
    fn table(&self) -> Option<(u64, u64, u64)> {
        let l = self.layout;
        let (phoff, w) = l.header(HeaderField::Phoff);
        let (entsize, _) = l.header(HeaderField::Phentsize);
        let (num, _) = l.header(HeaderField::Phnum);
        Some((self.read(phoff, w)?, self.read(entsize, 2)?, self.read(num, 2)?))
    }

    /// File offset of field `f` of program header `index` (modulo the count).
    fn program_field(&self, index: u8, f: ProgramField) -> Option<(u64, usize)> {
        let (phoff, entsize, num) = self.table()?;
        let i = u64::from(index) % num.max(1);
        let (at, w) = self.layout.program(f);
        Some((phoff.checked_add(i.checked_mul(entsize)?)?.checked_add(at)?, w))
    }

    /// Applies one edit; edits that point outside the file do nothing.
    pub fn apply(&mut self, m: &Mutation) {
        match m {
            Mutation::Header { field, value } => {
                let (at, w) = self.layout.header(*field);
                let v = self.resolve(*value, self.read(at, w).unwrap_or(0), w);
                self.write(at, w, v);
            }
            Mutation::Program { index, field, value } => {
                if let Some((at, w)) = self.program_field(*index, *field) {
                    let v = self.resolve(*value, self.read(at, w).unwrap_or(0), w);
                    self.write(at, w, v);
                }
            }
            Mutation::NoteWord { segment, word, value } => {
                let notes: Vec<Segment> = segments(&self.bytes).into_iter().filter(|s| s.kind == PT_NOTE).collect();
                if notes.is_empty() {
                    return;
                }
                let s = notes[usize::from(*segment) % notes.len()];
                let at = s.offset.saturating_add(4 * (u64::from(*word) % (s.filesz / 4 + 1)));
                let v = self.resolve(*value, self.read(at, 4).unwrap_or(0), 4);
                self.write(at, 4, v);
            }
            Mutation::AddNote { index, grow_previous, name, pvh_kind, kind, desc, namesz, descsz } => {
                let name: Vec<u8> = match name {
                    NoteName::Xen => b"Xen\0".to_vec(),
                    NoteName::XenNoNul => b"Xen".to_vec(),
                    NoteName::Gnu => b"GNU\0".to_vec(),
                    NoteName::Raw(n) => n.iter().copied().take(16).collect(),
                };
                let desc: Vec<u8> = desc.iter().copied().take(16).collect();
                self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
                let start = self.bytes.len() as u64;
                let kind = if *pvh_kind { NT_PHYS32_ENTRY } else { *kind };
                self.bytes.extend(namesz.unwrap_or(name.len() as u32).to_le_bytes());
                self.bytes.extend(descsz.unwrap_or(desc.len() as u32).to_le_bytes());
                self.bytes.extend(kind.to_le_bytes());
                for part in [&name, &desc] {
                    self.bytes.extend(part.iter());
                    self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
                }
                let end = self.bytes.len() as u64;
                let (index, offset) = match self.last_note {
                    Some((i, off)) if *grow_previous && off <= start => (i, off),
                    _ => (u64::from(*index), start),
                };
                let index = u8::try_from(index).unwrap_or(0);
                for (f, v) in [
                    (ProgramField::Type, u64::from(PT_NOTE)),
                    (ProgramField::Offset, offset),
                    (ProgramField::Filesz, end - offset),
                ] {
                    if let Some((at, w)) = self.program_field(index, f) {
                        self.write(at, w, v);
                    }
                }
                self.last_note = Some((u64::from(index), offset));
            }
            Mutation::Overwrite { offset, bytes } => {
                let at = usize::from(*offset).min(self.bytes.len());
                let end = (at + bytes.len()).min(self.bytes.len());
                self.bytes[at..end].copy_from_slice(&bytes[..end - at]);
            }
            Mutation::Truncate { len } => self.bytes.truncate(usize::from(*len)),
        }
    }
}

/// The file an edited-image input of the loader target stands for: byte 0
/// picks the base image, the rest is the `arbitrary` encoding of the
/// edits; `ram` is the guest RAM size `Value::RamEnd` refers to.
pub fn edited_image(input: &[u8], ram: u64) -> Option<Vec<u8>> {
    let (&base, edits) = input.split_first()?;
    let base = Base::ALL[usize::from(base) % Base::ALL.len()];
    let mutations = Vec::<Mutation>::arbitrary_take_rest(arbitrary::Unstructured::new(edits)).ok()?;
    let mut editor = Editor::new(base, ram);
    for m in &mutations {
        editor.apply(m);
    }
    Some(editor.bytes)
}

fn read_le(bytes: &[u8], at: u64, width: usize) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    let b = bytes.get(at..at.checked_add(width)?)?;
    let mut buf = [0u8; 8];
    buf[..width].copy_from_slice(b);
    Some(u64::from_le_bytes(buf))
}

/// One program header as this lenient reader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub kind: u32,
    pub offset: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// True if the image says ELF64 (`e_ident[EI_CLASS] == 2`).
pub fn is64(bytes: &[u8]) -> bool {
    bytes.get(4) == Some(&2)
}

/// `e_entry`, if the file is long enough.
pub fn entry(bytes: &[u8]) -> Option<u64> {
    read_le(bytes, 0x18, if is64(bytes) { 8 } else { 4 })
}

/// The program headers that lie wholly inside the file, in table order.
pub fn segments(bytes: &[u8]) -> Vec<Segment> {
    let l = Layout { is64: is64(bytes) };
    let field = |f| l.header(f);
    let (Some(phoff), Some(entsize), Some(num)) = (
        read_le(bytes, field(HeaderField::Phoff).0, field(HeaderField::Phoff).1),
        read_le(bytes, field(HeaderField::Phentsize).0, 2),
        read_le(bytes, field(HeaderField::Phnum).0, 2),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in 0..num {
        let Some(base) = i.checked_mul(entsize).and_then(|o| o.checked_add(phoff)) else { break };
        let get = |f| {
            let (at, w) = l.program(f);
            base.checked_add(at).and_then(|a| read_le(bytes, a, w))
        };
        let (Some(kind), Some(offset), Some(paddr), Some(filesz), Some(memsz)) = (
            get(ProgramField::Type),
            get(ProgramField::Offset),
            get(ProgramField::Paddr),
            get(ProgramField::Filesz),
            get(ProgramField::Memsz),
        ) else {
            break;
        };
        out.push(Segment { kind: kind as u32, offset, paddr, filesz, memsz });
    }
    out
}

/// The first PVH entry note (owner `"Xen\0"`, type 18) in the PT_NOTE
/// segments, walking the notes of each as the ELF spec lays them out
/// (4-byte aligned name and descriptor). Returns the descriptor's bytes.
pub fn pvh_note(bytes: &[u8]) -> Option<Vec<u8>> {
    for s in segments(bytes).into_iter().filter(|s| s.kind == PT_NOTE) {
        let start = usize::try_from(s.offset).ok()?;
        let notes = bytes.get(start..start.checked_add(usize::try_from(s.filesz).ok()?)?)?;
        let mut at = 0usize;
        while at + 12 <= notes.len() {
            let word = |o: usize| read_le(notes, o as u64, 4).map(|v| v as usize);
            let (namesz, descsz, kind) = (word(at)?, word(at + 4)?, word(at + 8)?);
            let name_at = at + 12;
            let desc_at = name_at.checked_add(namesz.checked_next_multiple_of(4)?)?;
            let name = notes.get(name_at..name_at.checked_add(namesz)?)?;
            if name == b"Xen\0" && kind == NT_PHYS32_ENTRY as usize {
                return notes.get(desc_at..desc_at.checked_add(descsz)?).map(<[u8]>::to_vec);
            }
            at = desc_at.checked_add(descsz.checked_next_multiple_of(4)?)?;
        }
    }
    None
}

/// A minimal ELF64 kernel with a PVH note whose descriptor is 8 bytes:
/// one PT_LOAD of 16 bytes at 1 MiB, one PT_NOTE, entry 1 MiB.
pub fn minimal64_pvh() -> Vec<u8> {
    const EHDR: u64 = 64;
    const PHDR: u64 = 56;
    let note_at = EHDR + 2 * PHDR;
    let note_len = 12 + 4 + 8;
    let code_at = note_at + note_len;
    let mut f = Vec::new();
    f.extend(b"\x7fELF\x02\x01\x01\0");
    f.extend([0u8; 8]);
    f.extend(2u16.to_le_bytes()); // ET_EXEC
    f.extend(62u16.to_le_bytes()); // EM_X86_64
    f.extend(1u32.to_le_bytes());
    f.extend(0x10_0000u64.to_le_bytes()); // e_entry
    f.extend(EHDR.to_le_bytes()); // e_phoff
    f.extend(0u64.to_le_bytes()); // e_shoff
    f.extend(0u32.to_le_bytes()); // e_flags
    for half in [EHDR as u16, PHDR as u16, 2, 64, 0, 0] {
        f.extend(half.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    }
    let phdr = |f: &mut Vec<u8>, kind: u32, offset: u64, paddr: u64, size: u64| {
        f.extend(kind.to_le_bytes());
        f.extend(5u32.to_le_bytes()); // R X
        for v in [offset, paddr, paddr, size, size + 16, 16] {
            f.extend(v.to_le_bytes());
        }
    };
    phdr(&mut f, PT_LOAD, code_at, 0x10_0000, 16);
    phdr(&mut f, PT_NOTE, note_at, 0, note_len);
    // A note segment's memsz is not used; give it its file size.
    let memsz_at = (EHDR + PHDR + 40) as usize;
    f[memsz_at..memsz_at + 8].copy_from_slice(&note_len.to_le_bytes());
    f.extend(4u32.to_le_bytes());
    f.extend(8u32.to_le_bytes());
    f.extend(NT_PHYS32_ENTRY.to_le_bytes());
    f.extend(b"Xen\0");
    f.extend(0x10_0000u64.to_le_bytes());
    f.extend([0xf4; 16]); // hlt
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_sees_the_bases_as_the_loader_does() {
        let m = minimal64_pvh();
        assert_eq!(segments(&m).iter().map(|s| s.kind).collect::<Vec<_>>(), [PT_LOAD, PT_NOTE]);
        assert_eq!(pvh_note(&m), Some(0x10_0000u64.to_le_bytes().to_vec()));
        let hello = Base::Hello.bytes();
        assert_eq!(pvh_note(&hello).map(|d| d.len()), Some(4));
        assert_eq!(pvh_note(&Base::Hello64.bytes()), None);
        assert_eq!(entry(&Base::Hello64.bytes()), Some(0x10_0000));
    }

    #[test]
    fn edits_change_the_named_field() {
        let mut e = Editor::new(Base::Minimal64Pvh, 4 << 20);
        e.apply(&Mutation::Program { index: 0, field: ProgramField::Paddr, value: Value::RamEnd(-8) });
        assert_eq!(segments(&e.bytes)[0].paddr, (4 << 20) - 8);
        e.apply(&Mutation::Header { field: HeaderField::Phnum, value: Value::Delta(-1) });
        assert_eq!(segments(&e.bytes).len(), 1);
        let mut e = Editor::new(Base::Hello64, 4 << 20);
        let add = Mutation::AddNote {
            index: 1,
            grow_previous: false,
            name: NoteName::Xen,
            pvh_kind: true,
            kind: 0,
            desc: 0x20_0000u32.to_le_bytes().to_vec(),
            namesz: None,
            descsz: None,
        };
        e.apply(&add);
        assert_eq!(pvh_note(&e.bytes), Some(0x20_0000u32.to_le_bytes().to_vec()));
        e.apply(&Mutation::Truncate { len: 3 });
        assert!(segments(&e.bytes).is_empty());
    }
}
