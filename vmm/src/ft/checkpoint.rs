//! Checkpoints of a running guest and the rollback to them.
//!
//! A checkpoint is a snapshot ([`crate::snapshot`]) taken at the same
//! consistent pause: every vCPU's state, the in-kernel devices, the device
//! models, and the memory. It lives in memory (a shadow copy of guest RAM,
//! anonymous and `MAP_NORESERVE`, so it costs what the guest wrote) or in
//! a directory as the two files of a snapshot, `DIR/slot-N` and
//! `DIR/slot-N.mem` (two slots used in turn, so the previous checkpoint
//! stays whole while the next is written), which `vmm restore` and the
//! supervisor's restarts read.
//!
//! A checkpoint copies only the pages KVM's dirty log says the guest wrote
//! since the previous one (in memory, or into the slot files of
//! [`super::disk`]), and a rollback copies back only the pages written
//! since the checkpoint: both cost what the guest dirtied in between, not
//! its RAM. (`full` copies every page ever written instead: the
//! benchmark's comparison.)

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kvm_ioctls::VcpuFd;

use super::disk::Slots;
use super::VmParts;
use crate::control::Paused;
use crate::controller::Controller;
use crate::kvmstate::{self, VcpuCaps};
use crate::memory::{self, Bytes, GuestAddress, GuestMemoryMmap, MemoryError, PageSet, PAGE_SIZE};
use crate::snapshot::file::{self, SnapshotFileError, MEMORY_HEADER_LEN};
use crate::snapshot::state::{MemoryLayout, Snapshot};
use crate::vm::VmError;

/// Bytes copied at a time.
const CHUNK: usize = 1 << 20;

/// Errors of taking a checkpoint or rolling back to one.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot write checkpoint {seq} to {path}: check that the directory is writable and has room")]
    Write {
        seq: u64,
        path: PathBuf,
        #[source]
        source: SnapshotFileError,
    },
    #[error("cannot read the pages of checkpoint {seq} back from {path}")]
    Read {
        seq: u64,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the checkpoint directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("guest memory or the in-memory checkpoint's copy of it")]
    Memory(#[source] MemoryError),
    #[error("cannot read or write the machine state")]
    Vm(#[source] Box<VmError>),
    #[error("the checkpoint has device {theirs} where this VM has {ours}: the devices changed since it was taken")]
    Devices { ours: String, theirs: String },
}

fn vm_err(e: VmError) -> CheckpointError {
    CheckpointError::Vm(Box::new(e))
}

fn state_err(e: kvmstate::StateError) -> CheckpointError {
    vm_err(VmError::State(e))
}

/// One checkpoint.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Its number; the files are `ckpt-SEQ` in directory mode.
    pub seq: u64,
    /// The machine state (its memory layout is left empty in memory mode).
    pub state: Snapshot,
    /// The state file, in directory mode.
    pub path: Option<PathBuf>,
    /// Exits the run had handled at the pause.
    pub exits: u64,
    /// When it was taken.
    pub taken: Instant,
}

/// Where and how checkpoints are kept.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// In this directory, else in memory.
    pub dir: Option<PathBuf>,
    /// Copy every page ever written at each checkpoint, not only the dirty ones.
    pub full: bool,
    /// Keep the first checkpoint too (the watchdog's `reset` goes back to it).
    pub keep_boot: bool,
    /// The first checkpoint's number.
    pub first_seq: u64,
    /// The VM was restored from this checkpoint file (of `dir`), whose
    /// number is `first_seq`: it is the first checkpoint, nothing is written.
    pub resume: Option<PathBuf>,
}

/// Counts of the checkpoints taken.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckpointStats {
    pub count: u64,
    /// From the vCPU's pause to the checkpoint kept, summed and at worst.
    pub total: Duration,
    pub max: Duration,
    /// Pages copied or written.
    pub pages: u64,
}

/// What a rollback did.
#[derive(Clone, Copy, Debug)]
pub struct RolledBack {
    pub seq: u64,
    /// Exits the run had handled when that checkpoint was taken.
    pub exits: u64,
    /// Pages put back.
    pub pages: u64,
    pub took: Duration,
}

/// The latest checkpoint and what is needed to go back to it.
#[derive(Debug)]
pub struct CheckpointStore {
    latest: Checkpoint,
    /// In memory mode: guest RAM as it was at `latest`.
    shadow: Option<GuestMemoryMmap>,
    /// In directory mode: the slot files.
    slots: Option<Slots>,
    opts: StoreOptions,
    /// The first checkpoint with a copy of its memory, for `reset`.
    boot: Option<(Checkpoint, GuestMemoryMmap)>,
    /// Pages written since `latest` that KVM's dirty log no longer holds.
    since: PageSet,
    next_seq: u64,
    pub stats: CheckpointStats,
}

/// Copies `pages` of `from` into `to`.
fn copy_pages(from: &GuestMemoryMmap, to: &GuestMemoryMmap, pages: &PageSet) -> Result<(), MemoryError> {
    let mut buf = vec![0u8; CHUNK];
    for (first, count) in pages.runs() {
        let (mut at, end) = (first * PAGE_SIZE, (first + count) * PAGE_SIZE);
        while at < end {
            let n = ((end - at) as usize).min(CHUNK);
            memory::read(from, at, &mut buf[..n])?;
            to.write_slice(&buf[..n], GuestAddress(at)).map_err(|_| MemoryError::OutOfRange { addr: at, len: n })?;
            at += n as u64;
        }
    }
    Ok(())
}

/// Reads `pages` of a snapshot's memory file into `to` (holes read as zero).
fn read_pages(mem_file: &Path, to: &GuestMemoryMmap, pages: &PageSet) -> std::io::Result<()> {
    let file = File::open(mem_file)?;
    let mut buf = vec![0u8; CHUNK];
    for (first, count) in pages.runs() {
        let (mut at, end) = (first * PAGE_SIZE, (first + count) * PAGE_SIZE);
        while at < end {
            let n = ((end - at) as usize).min(CHUNK);
            file.read_exact_at(&mut buf[..n], MEMORY_HEADER_LEN + at)?;
            memory::write(to, at, &buf[..n]).map_err(std::io::Error::other)?;
            at += n as u64;
        }
    }
    Ok(())
}

/// Re-enters KVM_RUN with `immediate_exit`, so that KVM finishes the last
/// exit's I/O without running the guest: the vCPU can then take new state.
pub(crate) fn settle(vcpu: &mut VcpuFd) -> Result<(), VmError> {
    vcpu.set_kvm_immediate_exit(1);
    let mut result = Ok(());
    // An exit before the pause point (the next element of a string I/O) is dropped: the state is replaced.
    for _ in 0..4096 {
        match vcpu.run() {
            Err(e) if e.errno() == libc::EINTR => break,
            Err(e) if e.errno() == libc::EAGAIN => {}
            Err(source) => {
                result = Err(VmError::Kvm { call: "KVM_RUN", source });
                break;
            }
            Ok(_) => {}
        }
    }
    vcpu.set_kvm_immediate_exit(0);
    result
}

impl CheckpointStore {
    /// Takes the first checkpoint: the machine as it is now, before the
    /// guest's next instruction (its boot, or its restore).
    ///
    /// # Errors
    ///
    /// A failed KVM call, memory that cannot be mapped, a file that cannot be written.
    pub(crate) fn start(parts: &mut VmParts<'_>, caps: &VcpuCaps, opts: StoreOptions) -> Result<Self, CheckpointError> {
        let started = Instant::now();
        if let Some(dir) = &opts.dir {
            std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Dir { path: dir.clone(), source })?;
        }
        // What the guest wrote before is in `written` already; the log starts over here.
        let dirty = memory::take_dirty(parts.vm, parts.mem).map_err(CheckpointError::Memory)?;
        parts.written.union_with(&dirty);
        let mut vcpu = kvmstate::save_vcpu(parts.vcpu, 0, caps).map_err(state_err)?;
        vcpu.cpuid = parts.cpuid.to_vec();
        vcpu.tsc_khz = parts.tsc_khz;
        let vm = kvmstate::save_vm(parts.vm, parts.machine.timers).map_err(state_err)?;
        let devices = crate::runloop::save_devices(parts.buses);
        let state =
            Snapshot { machine: parts.machine, vcpus: vec![vcpu], vm, devices, memory: MemoryLayout::default() };
        let copy = || -> Result<GuestMemoryMmap, CheckpointError> {
            let shadow = memory::create(parts.machine.ram_mib).map_err(CheckpointError::Memory)?;
            copy_pages(parts.mem, &shadow, parts.written).map_err(CheckpointError::Memory)?;
            Ok(shadow)
        };
        let shadow = if opts.dir.is_none() { Some(copy()?) } else { None };
        let seq = opts.first_seq;
        let latest = Checkpoint { seq, state, path: None, exits: 0, taken: started };
        let boot = if opts.keep_boot { Some((latest.clone(), copy()?)) } else { None };
        let slots = opts.dir.as_deref().map(|d| Slots::new(d, parts.machine.ram_pages()));
        let mut store = CheckpointStore {
            latest,
            shadow,
            slots,
            boot,
            since: PageSet::new(parts.machine.ram_pages()),
            next_seq: seq + 1,
            stats: CheckpointStats::default(),
            opts,
        };
        let resumed = store.opts.resume.clone().map(|path| (file::read_state(&path), path));
        match (store.slots.as_mut(), resumed) {
            (Some(slots), Some((Ok(snapshot), path))) => {
                slots.resume(seq, &snapshot);
                store.latest.path = Some(path);
            }
            (Some(_), _) => store.write_slot(seq, parts.mem, parts.written, &dirty)?,
            (None, _) => {}
        }
        store.stats.pages += parts.written.len();
        Ok(store)
    }

    /// The latest checkpoint.
    pub fn latest(&self) -> &Checkpoint {
        &self.latest
    }

    /// Pages someone else took out of KVM's dirty log (a snapshot's writer).
    pub fn note_dirty(&mut self, pages: &PageSet) {
        self.since.union_with(pages);
    }

    /// Writes the latest checkpoint (number `seq`) to its slot file.
    fn write_slot(
        &mut self,
        seq: u64,
        mem: &GuestMemoryMmap,
        written: &PageSet,
        dirty: &PageSet,
    ) -> Result<(), CheckpointError> {
        let Some(slots) = self.slots.as_mut() else { return Ok(()) };
        let path = slots.path(seq);
        let wrote = slots
            .write(seq, self.latest.state.clone(), mem, written, dirty)
            .map_err(|source| CheckpointError::Write { seq, path: path.clone(), source })?;
        self.stats.pages += wrote.pages;
        self.latest.path = Some(path);
        Ok(())
    }

    /// Takes a checkpoint of the vCPU paused in `paused`: the VM-wide state
    /// and the memory from `ctl`.
    ///
    /// # Errors
    ///
    /// A failed KVM call or a checkpoint file that cannot be written; the
    /// previous checkpoint stays the latest.
    pub(crate) fn take(&mut self, ctl: &mut Controller<'_>, paused: &Paused) -> Result<&Checkpoint, CheckpointError> {
        let mut dirty = ctl.collect_dirty().map_err(vm_err)?;
        dirty.union_with(&self.since);
        let state = ctl.machine_state(paused).map_err(vm_err)?;
        let seq = self.next_seq;
        let previous = std::mem::replace(
            &mut self.latest,
            Checkpoint { seq, state, path: None, exits: paused.exits, taken: Instant::now() },
        );
        let kept = match &self.shadow {
            Some(shadow) => {
                let pages = if self.opts.full { &*ctl.written } else { &dirty };
                self.stats.pages += pages.len();
                copy_pages(ctl.mem, shadow, pages).map_err(CheckpointError::Memory)
            }
            None => {
                let dirty = if self.opts.full { &*ctl.written } else { &dirty };
                self.write_slot(seq, ctl.mem, ctl.written, dirty)
            }
        };
        if let Err(e) = kept {
            // A shadow half updated cannot be rolled back to: only a file can fail here.
            self.latest = previous;
            return Err(e);
        }
        self.since = PageSet::new(self.since.capacity());
        self.next_seq += 1;
        let took = paused.at.elapsed();
        self.stats.count += 1;
        self.stats.total += took;
        self.stats.max = self.stats.max.max(took);
        Ok(&self.latest)
    }

    /// Puts the machine back as it was at the latest checkpoint (or, with
    /// `to_boot`, at the first one, which then becomes the latest). The
    /// vCPU thread must have ended.
    ///
    /// # Errors
    ///
    /// A failed KVM call, a checkpoint file that cannot be read back,
    /// devices that changed since the checkpoint.
    pub(crate) fn rollback(&mut self, parts: &mut VmParts<'_>, to_boot: bool) -> Result<RolledBack, CheckpointError> {
        let start = Instant::now();
        settle(parts.vcpu).map_err(vm_err)?;
        let mut pages = memory::take_dirty(parts.vm, parts.mem).map_err(CheckpointError::Memory)?;
        pages.union_with(&self.since);
        parts.written.union_with(&pages);
        match (&self.boot, to_boot) {
            (Some((boot, boot_mem)), true) => {
                pages.union_with(parts.written);
                copy_pages(boot_mem, parts.mem, &pages).map_err(CheckpointError::Memory)?;
                let seq = self.next_seq;
                self.next_seq += 1;
                self.latest = Checkpoint { seq, taken: Instant::now(), path: None, ..boot.clone() };
                if let Some(shadow) = &self.shadow {
                    copy_pages(boot_mem, shadow, &pages).map_err(CheckpointError::Memory)?;
                }
                if let Some(slots) = self.slots.as_mut() {
                    slots.invalidate(&pages);
                    self.write_slot(seq, parts.mem, parts.written, &PageSet::new(self.since.capacity()))?;
                }
            }
            _ => match (&self.shadow, &self.latest.path) {
                (Some(shadow), _) => copy_pages(shadow, parts.mem, &pages).map_err(CheckpointError::Memory)?,
                (None, Some(path)) => {
                    let mem_path = file::memory_path(path);
                    let read = read_pages(&mem_path, parts.mem, &pages);
                    read.map_err(|source| CheckpointError::Read { seq: self.latest.seq, path: mem_path, source })?;
                }
                (None, None) => {}
            },
        }
        let state = &self.latest.state;
        kvmstate::restore_vm(parts.vm, &state.vm, &[]).map_err(state_err)?;
        if let Some(vcpu) = state.vcpus.first() {
            kvmstate::load_vcpu_state(parts.vcpu, vcpu, &[]).map_err(state_err)?;
        }
        let buses = parts.buses.pio.devices_mut().chain(parts.buses.mmio.devices_mut());
        for ((_, _, name, device), record) in buses.zip(&state.devices) {
            if name != record.placement.name {
                return Err(CheckpointError::Devices { ours: name.into(), theirs: record.placement.name.clone() });
            }
            device.restore(&record.state).map_err(|e| vm_err(VmError::Incompatible(format!("device {name}: {e}"))))?;
        }
        self.since = PageSet::new(self.since.capacity());
        let latest = &self.latest;
        Ok(RolledBack { seq: latest.seq, exits: latest.exits, pages: pages.len(), took: start.elapsed() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_copy_between_memories_and_come_back_from_a_memory_file() {
        let a = memory::create(4).unwrap();
        let b = memory::create(4).unwrap();
        memory::write(&a, 0x1000, b"first page").unwrap();
        memory::write(&a, 0x20_0000, &[7u8; 8192]).unwrap();
        let mut pages = PageSet::new(1024);
        pages.insert(1);
        pages.insert_run(0x200, 2);
        copy_pages(&a, &b, &pages).unwrap();
        let mut buf = [0u8; 10];
        memory::read(&b, 0x1000, &mut buf).unwrap();
        assert_eq!(&buf, b"first page");
        assert_eq!(memory::read_u64(&b, 0x20_1ff8).unwrap(), u64::from_le_bytes([7; 8]));
        // Pages outside the set are left alone.
        memory::write(&a, 0x5000, &[1]).unwrap();
        copy_pages(&a, &b, &pages).unwrap();
        assert_eq!(memory::read_u64(&b, 0x5000).unwrap(), 0);

        let path = std::env::temp_dir().join(format!("vmm-ckpt-pages-{}", std::process::id()));
        let mut f = vec![0u8; (MEMORY_HEADER_LEN + 4 * 4096) as usize];
        f[(MEMORY_HEADER_LEN + 4096) as usize..][..4].copy_from_slice(b"disk");
        std::fs::write(&path, &f).unwrap();
        let c = memory::create(1).unwrap();
        memory::write(&c, 0x1000, b"guest").unwrap();
        memory::write(&c, 0x2000, b"dirty").unwrap();
        let mut back = PageSet::new(256);
        back.insert_run(1, 2);
        read_pages(&path, &c, &back).unwrap();
        let mut buf = [0u8; 5];
        memory::read(&c, 0x1000, &mut buf).unwrap();
        assert_eq!(&buf, b"disk\0");
        memory::read(&c, 0x2000, &mut buf).unwrap();
        assert_eq!(buf, [0; 5], "a page the file holds as zero comes back zero");
        back.insert(100);
        assert!(read_pages(&path, &c, &back).is_err(), "a page past the file's end is an error");
        std::fs::remove_file(&path).unwrap();
    }
}
