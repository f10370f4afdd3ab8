//! `vmm bench` figures for snapshots and live migration.
//!
//! - Snapshot: the `exits` guest paused after 1000 exits, with 128 MiB and
//!   with 2 GiB of RAM: the time from the pause to both files written, the
//!   files' sizes, and the time from reading the state file to a VM ready
//!   for its next instruction (memory checksums verified), fastest and
//!   median of several restores.
//! - Migration: the `workset` guest with working sets of 1, 16 and 64 MiB,
//!   migrated over loopback TCP to a `vmm receive` child process of this
//!   same binary once every page of its working set has been written.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::controller::SnapshotPlan;
use crate::migration::source::MigratePlan;
use crate::migration::{Address, MigrationReport};
use crate::snapshot::file;
use crate::vm::{RunOptions, SerialIo, Vm, VmConfig, VmError};

/// Snapshot figures for one RAM size.
#[derive(Clone, Debug)]
pub struct SnapshotFigures {
    pub ram_mib: u64,
    pub create: Duration,
    pub state_bytes: u64,
    pub memory_apparent: u64,
    pub memory_allocated: u64,
    pub restore_min: Duration,
    pub restore_median: Duration,
}

/// Migration figures for one working set (median of the runs by downtime).
#[derive(Clone, Debug)]
pub struct MigrationFigures {
    pub working_set_mib: u64,
    pub report: MigrationReport,
    pub downtimes: Vec<Duration>,
}

fn sink() -> SerialIo {
    SerialIo { out: Box::new(io::sink()), input: None }
}

fn bench_error(what: &str) -> VmError {
    VmError::Loader(crate::loader::LoaderError::Read {
        path: what.to_string(),
        source: io::Error::other("benchmark set-up failed"),
    })
}

/// Snapshots `exits` after 1000 exits with `ram_mib` of RAM, restores it `restores` times.
///
/// # Errors
///
/// Any failure of the VM, the snapshot or the restore.
pub fn snapshot(ram_mib: u64, restores: u32) -> Result<SnapshotFigures, VmError> {
    let guest = guests::find("exits").ok_or_else(|| bench_error("exits"))?;
    let (image, config) = crate::builtin_image(guest);
    let config = VmConfig { mem_mib: ram_mib, ..config };
    let path = std::env::temp_dir().join(format!("vmm-bench-{}-{ram_mib}", std::process::id()));
    let mut vm = Vm::boot(&config, &image, sink())?;
    let plan = SnapshotPlan { path: path.clone(), after_exits: Some(1000), stop: true };
    let report = vm.run(RunOptions { snapshot: Some(plan), ..Default::default() })?;
    let taken = report.snapshots.first().ok_or_else(|| bench_error("the snapshot"))?.clone();
    let mem_path = file::memory_path(&path);
    let meta = std::fs::metadata(&mem_path).map_err(|_| bench_error("the memory file"))?;
    let mut times = Vec::new();
    for _ in 0..restores.max(1) {
        let start = Instant::now();
        let snapshot = file::read_state(&path).map_err(VmError::Snapshot)?;
        let mem = file::map_memory(&path, &snapshot, true).map_err(VmError::Snapshot)?;
        let mut vm = Vm::restore(&snapshot, mem, sink(), &[])?;
        times.push(start.elapsed());
        let report = vm.run(RunOptions::default())?;
        if report.status() != 0 {
            return Err(bench_error("the restored guest"));
        }
    }
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&mem_path);
    times.sort();
    Ok(SnapshotFigures {
        ram_mib,
        create: taken.took,
        state_bytes: taken.written.state_bytes,
        memory_apparent: meta.len(),
        memory_allocated: std::os::unix::fs::MetadataExt::blocks(&meta) * 512,
        restore_min: times[0],
        restore_median: times[times.len() / 2],
    })
}

/// Starts `vmm receive` (this binary) on a free loopback port.
fn destination() -> Result<(std::process::Child, String), VmError> {
    let exe = std::env::current_exe().map_err(|_| bench_error("this binary"))?;
    let mut child = Command::new(exe)
        .args(["receive", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|_| bench_error("vmm receive"))?;
    let mut stderr = BufReader::new(child.stderr.take().ok_or_else(|| bench_error("vmm receive"))?);
    let mut line = String::new();
    let _ = stderr.read_line(&mut line);
    let addr =
        line.trim().strip_prefix("vmm receive: listening on ").ok_or_else(|| bench_error("vmm receive"))?.to_string();
    std::thread::spawn(move || io::copy(&mut stderr, &mut io::sink()));
    Ok((child, addr))
}

/// Migrates `workset` with a working set of `mib` MiB, `runs` times.
///
/// # Errors
///
/// Any failure of the VMs, or a migration that aborted.
pub fn migration(mib: u64, runs: u32) -> Result<MigrationFigures, VmError> {
    let guest = guests::find("workset").ok_or_else(|| bench_error("workset"))?;
    let (image, config) = crate::builtin_image(guest);
    let config = VmConfig { mem_mib: 16 + mib + 16, cmdline: format!("mib={mib} passes=1024"), ..config };
    let mut reports = Vec::new();
    for _ in 0..runs.max(1) {
        let (mut child, addr) = destination()?;
        let mut vm = Vm::boot(&config, &image, sink())?;
        // Once the first pass has written the whole working set (about 6 ms per MiB here).
        let after = Duration::from_millis(100 + 8 * mib);
        let plan = MigratePlan {
            to: Address::parse(&addr).map_err(VmError::Receive)?,
            after: Some(after),
            max_downtime: Duration::from_millis(5),
            max_rounds: 30,
        };
        let report = vm.run(RunOptions { migrate: Some(plan), ..Default::default() });
        let _ = child.kill();
        let _ = child.wait();
        let migration = report?.migrations.pop().ok_or_else(|| bench_error("the migration"))?;
        if migration.aborted.is_some() {
            return Err(bench_error("the migration (aborted)"));
        }
        reports.push(migration);
    }
    reports.sort_by_key(|r| r.downtime);
    let downtimes = reports.iter().filter_map(|r| r.downtime).collect();
    let report = reports.swap_remove(reports.len() / 2);
    Ok(MigrationFigures { working_set_mib: mib, report, downtimes })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Writes the snapshot figures as a table.
pub fn render_snapshots(figures: &[SnapshotFigures], out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "snapshot of `exits` after 1000 exits, restored and run to its end:")?;
    writeln!(out, "| RAM | create | state file | memory file (apparent / on disk) | restore to next instruction (fastest / median) |")?;
    writeln!(out, "|---:|---:|---:|---:|---:|")?;
    for f in figures {
        writeln!(
            out,
            "| {} MiB | {:.3} ms | {} B | {} MiB / {} KiB | {:.3} ms / {:.3} ms |",
            f.ram_mib,
            ms(f.create),
            f.state_bytes,
            f.memory_apparent >> 20,
            f.memory_allocated >> 10,
            ms(f.restore_min),
            ms(f.restore_median)
        )?;
    }
    Ok(())
}

/// Writes the migration figures as a table.
pub fn render_migrations(figures: &[MigrationFigures], out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "live migration of `workset` over loopback TCP (median run by downtime):")?;
    writeln!(
        out,
        "| working set | rounds | pages per round | total sent | total time | downtime (median; all runs) |"
    )?;
    writeln!(out, "|---:|---:|---|---:|---:|---|")?;
    for f in figures {
        let r = &f.report;
        let pages: Vec<String> = r.rounds.iter().map(|r| r.pages.to_string()).collect();
        let all: Vec<String> = f.downtimes.iter().map(|d| format!("{:.2}", ms(*d))).collect();
        writeln!(
            out,
            "| {} MiB | {} | {} | {:.1} MiB | {:.1} ms | {:.3} ms; {} |",
            f.working_set_mib,
            r.rounds.len(),
            pages.join(", "),
            r.total_bytes as f64 / f64::from(1 << 20),
            ms(r.total),
            ms(r.downtime.unwrap_or_default()),
            all.join(", ")
        )?;
    }
    Ok(())
}
