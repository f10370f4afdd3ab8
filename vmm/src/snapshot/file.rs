//! The two files of a snapshot, as Firecracker keeps them: the state file
//! ([`super::format`]) and the memory file `FILE.mem`, which holds guest RAM
//! at its guest-physical offset after a one-page header. Only the pages the
//! guest (or the VMM while loading it) ever wrote are written; the rest are
//! holes, so the file is sparse, and a restore maps it `MAP_PRIVATE`: it
//! costs what the guest touched, not the size of its RAM.
//!
//! Both files are written next to their final names and renamed into
//! place, memory file first, so a crash leaves the old snapshot whole and a
//! restored guest whose RAM maps the old memory file keeps its pages.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{self, SnapshotError};
use super::state::{MemoryLayout, PageRange, Snapshot, PAGE_SIZE};
use crate::codec::{crc32c, crc32c_append, Decoder, Encoder};
use crate::memory::{self, Bytes, GuestAddress, GuestMemoryMmap, MemoryError, PageSet};

/// The first bytes of a memory file.
pub const MEMORY_MAGIC: [u8; 8] = *b"VLABMEM\0";
/// Guest RAM starts at this offset of the memory file.
pub const MEMORY_HEADER_LEN: u64 = 4096;
const MEMORY_VERSION: u32 = 1;
/// Bytes copied at a time between guest RAM and a file.
const CHUNK: usize = 1 << 20;

/// Errors of writing or reading a snapshot's files.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("cannot {doing} {path}")]
    Io {
        doing: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable snapshot state file")]
    Format {
        path: PathBuf,
        #[source]
        source: SnapshotError,
    },
    #[error("{path} is not the memory file of this snapshot: {why}")]
    MemoryFile { path: PathBuf, why: String },
    #[error("the memory file {path} is corrupt: pages {first:#x}..{end:#x} have CRC-32C {computed:#010x}, the state file says {stored:#010x}")]
    MemoryChecksum { path: PathBuf, first: u64, end: u64, stored: u32, computed: u32 },
    #[error("{0}: restore it with the options it was made with (`vmm snapshot-info` shows them)")]
    OtherOptions(String),
    #[error("guest memory")]
    Memory(#[source] MemoryError),
}

/// The memory file of the state file `state`: `STATE.mem`.
pub fn memory_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".mem");
    PathBuf::from(name)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp{}", std::process::id()));
    PathBuf::from(name)
}

fn io<'a>(doing: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SnapshotFileError + 'a {
    move |source| SnapshotFileError::Io { doing, path: path.to_path_buf(), source }
}

/// What writing a snapshot produced.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    /// Bytes of the state file.
    pub state_bytes: u64,
    /// Pages in the memory file.
    pub pages: u64,
}

fn memory_header(id: u64, ram: u64) -> Vec<u8> {
    let mut e = Encoder::default();
    e.raw(&MEMORY_MAGIC).u32(MEMORY_VERSION).u32(0).u64(id).u64(ram);
    let crc = crc32c(&e.buf);
    e.u32(crc);
    e.buf
}

/// A fresh id binding a state file to its memory file.
pub(crate) fn random_id() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most b.len() bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        return u64::from_le_bytes(b);
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
}

/// Writes the memory file: `pages` of `mem` at their guest-physical offsets.
fn write_memory(
    path: &Path,
    mem: &GuestMemoryMmap,
    pages: &PageSet,
    id: u64,
) -> Result<Vec<PageRange>, SnapshotFileError> {
    let file = File::create(path).map_err(io("create", path))?;
    let ram = memory::ram_size(mem);
    file.write_all_at(&memory_header(id, ram), 0).map_err(io("write", path))?;
    file.set_len(MEMORY_HEADER_LEN + ram).map_err(io("size", path))?;
    let mut buf = vec![0u8; CHUNK];
    let mut ranges = Vec::new();
    for (first, count) in pages.runs() {
        let mut crc = 0;
        let (start, end) = (first * PAGE_SIZE, (first + count) * PAGE_SIZE);
        let mut at = start;
        while at < end {
            let n = ((end - at) as usize).min(CHUNK);
            mem.read_slice(&mut buf[..n], GuestAddress(at))
                .map_err(|_| SnapshotFileError::Memory(MemoryError::OutOfRange { addr: at, len: n }))?;
            crc = crc32c_append(crc, &buf[..n]);
            file.write_all_at(&buf[..n], MEMORY_HEADER_LEN + at).map_err(io("write", path))?;
            at += n as u64;
        }
        ranges.push(PageRange { first, count, crc });
    }
    Ok(ranges)
}

/// Writes `snapshot` to `path` and its memory (`pages` of `mem`) to
/// `path.mem`; the snapshot's memory layout is filled in here.
///
/// # Errors
///
/// The file and the operation that failed.
pub fn write(
    path: &Path,
    mut snapshot: Snapshot,
    mem: &GuestMemoryMmap,
    pages: &PageSet,
) -> Result<Written, SnapshotFileError> {
    let id = random_id();
    let mem_path = memory_path(path);
    let mem_tmp = temp_path(&mem_path);
    let ranges = write_memory(&mem_tmp, mem, pages, id)?;
    snapshot.memory = MemoryLayout { id, ranges };
    let bytes = format::encode(&snapshot);
    let tmp = temp_path(path);
    std::fs::write(&tmp, &bytes).map_err(io("write", &tmp))?;
    std::fs::rename(&mem_tmp, &mem_path).map_err(io("rename into place", &mem_path))?;
    std::fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    Ok(Written { state_bytes: bytes.len() as u64, pages: snapshot.memory.pages() })
}

/// Rewrites a snapshot's two files as a checkpoint slot is rewritten: the
/// memory file `path.mem` gets `pages` of `mem` at their offsets (made
/// anew beside its name and renamed into place when `fresh`, else written
/// in place: the caller keeps another slot whole meanwhile), then the
/// state file, holding `layout`, whose id and per-range CRC-32Cs the
/// caller computed for the memory as it is now.
///
/// # Errors
///
/// The file and the operation that failed.
pub fn update(
    path: &Path,
    mut snapshot: Snapshot,
    mem: &GuestMemoryMmap,
    pages: &PageSet,
    layout: MemoryLayout,
    fresh: bool,
) -> Result<Written, SnapshotFileError> {
    let mem_path = memory_path(path);
    let target = if fresh { temp_path(&mem_path) } else { mem_path.clone() };
    let file = if fresh {
        let f = File::create(&target).map_err(io("create", &target))?;
        let ram = memory::ram_size(mem);
        f.write_all_at(&memory_header(layout.id, ram), 0).map_err(io("write", &target))?;
        f.set_len(MEMORY_HEADER_LEN + ram).map_err(io("size", &target))?;
        f
    } else {
        std::fs::OpenOptions::new().write(true).open(&target).map_err(io("open", &target))?
    };
    let mut buf = vec![0u8; CHUNK];
    for (first, count) in pages.runs() {
        let (mut at, end) = (first * PAGE_SIZE, (first + count) * PAGE_SIZE);
        while at < end {
            let n = ((end - at) as usize).min(CHUNK);
            mem.read_slice(&mut buf[..n], GuestAddress(at))
                .map_err(|_| SnapshotFileError::Memory(MemoryError::OutOfRange { addr: at, len: n }))?;
            file.write_all_at(&buf[..n], MEMORY_HEADER_LEN + at).map_err(io("write", &target))?;
            at += n as u64;
        }
    }
    snapshot.memory = layout;
    let bytes = format::encode(&snapshot);
    let tmp = temp_path(path);
    std::fs::write(&tmp, &bytes).map_err(io("write", &tmp))?;
    if fresh {
        std::fs::rename(&target, &mem_path).map_err(io("rename into place", &mem_path))?;
    }
    std::fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    Ok(Written { state_bytes: bytes.len() as u64, pages: pages.len() })
}

/// Reads and checks the state file at `path`.
///
/// # Errors
///
/// The file cannot be read, or [`format::parse`] refuses it.
pub fn read_state(path: &Path) -> Result<Snapshot, SnapshotFileError> {
    let bytes = std::fs::read(path).map_err(io("read", path))?;
    format::parse(&bytes).map_err(|source| SnapshotFileError::Format { path: path.to_path_buf(), source })
}

/// Opens the memory file of `snapshot` (made from `path`), checks that it
/// belongs to it, maps it as guest RAM and, with `verify`, checks the
/// CRC-32C of every range the guest wrote (reading only those pages).
///
/// # Errors
///
/// A missing, foreign, truncated or corrupt memory file, named.
pub fn map_memory(path: &Path, snapshot: &Snapshot, verify: bool) -> Result<GuestMemoryMmap, SnapshotFileError> {
    let mem_path = memory_path(path);
    let mut file = File::open(&mem_path).map_err(io("open", &mem_path))?;
    let ram = snapshot.machine.ram_bytes();
    let bad = |why: String| SnapshotFileError::MemoryFile { path: mem_path.clone(), why };
    let mut header = [0u8; 36];
    file.read_exact(&mut header).map_err(|_| bad("it is shorter than its header".into()))?;
    let mut d = Decoder::new(&header);
    let field = |r: Result<u64, crate::codec::CodecError>| r.unwrap_or_default();
    let magic = d.take(8, "magic").unwrap_or_default();
    if magic != MEMORY_MAGIC {
        return Err(bad(format!("it starts with {magic:02x?}, not \"VLABMEM\"")));
    }
    let version = field(d.u32("version").map(u64::from));
    let _ = d.u32("reserved");
    let (id, size) = (field(d.u64("id")), field(d.u64("size")));
    let stored = field(d.u32("crc").map(u64::from)) as u32;
    if version != u64::from(MEMORY_VERSION) || stored != crc32c(&header[..32]) {
        return Err(bad(format!("its header is corrupt or of another version ({version})")));
    }
    if id != snapshot.memory.id {
        return Err(bad(format!("it belongs to snapshot {id:#018x}, the state file is {:#018x}", snapshot.memory.id)));
    }
    let len = file.metadata().map_err(io("stat", &mem_path))?.len();
    if size != ram || len != MEMORY_HEADER_LEN + ram {
        return Err(bad(format!(
            "it is {len} bytes for {size} bytes of RAM; the snapshot needs {} bytes for {ram}: the file is truncated",
            MEMORY_HEADER_LEN + ram
        )));
    }
    let mem = memory::map_file(file, MEMORY_HEADER_LEN, snapshot.machine.ram_mib).map_err(SnapshotFileError::Memory)?;
    if verify {
        verify_ranges(&mem_path, &mem, &snapshot.memory)?;
    }
    Ok(mem)
}

fn verify_ranges(path: &Path, mem: &GuestMemoryMmap, layout: &MemoryLayout) -> Result<(), SnapshotFileError> {
    let mut buf = vec![0u8; CHUNK];
    for r in &layout.ranges {
        let (start, end) = (r.first * PAGE_SIZE, (r.first + r.count) * PAGE_SIZE);
        let (mut at, mut crc) = (start, 0);
        while at < end {
            let n = ((end - at) as usize).min(CHUNK);
            mem.read_slice(&mut buf[..n], GuestAddress(at))
                .map_err(|_| SnapshotFileError::Memory(MemoryError::OutOfRange { addr: at, len: n }))?;
            crc = crc32c_append(crc, &buf[..n]);
            at += n as u64;
        }
        if crc != r.crc {
            let path = path.to_path_buf();
            return Err(SnapshotFileError::MemoryChecksum {
                path,
                first: r.first,
                end: r.first + r.count,
                stored: r.crc,
                computed: crc,
            });
        }
    }
    Ok(())
}

/// The pages a memory layout holds, as a set over `pages` pages.
pub fn layout_pages(layout: &MemoryLayout, pages: u64) -> PageSet {
    let mut set = PageSet::new(pages);
    for r in &layout.ranges {
        set.insert_run(r.first, r.count);
    }
    set
}
