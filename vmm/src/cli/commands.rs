//! The commands of `vmm` that only report: `snapshot-info`, `bench` (the
//! exit, snapshot and migration figures, and the fault-tolerance ones), and
//! the words `vmm supervise` passes on to its children.

use std::io::Write;
use std::path::Path;

use super::{BenchPart, Cli};
use crate::snapshot::file;
use crate::vm::VmError;

pub(super) fn snapshot_info(path: &Path, out: &mut dyn Write) -> Result<i32, VmError> {
    let snapshot = file::read_state(path).map_err(VmError::Snapshot)?;
    let _ = write!(out, "{}", snapshot.describe());
    file::map_memory(path, &snapshot, true).map_err(VmError::Snapshot)?;
    let mem_path = file::memory_path(path);
    let meta = std::fs::metadata(&mem_path).ok();
    let (len, allocated) = meta.map_or((0, 0), |m| {
        (std::os::unix::fs::MetadataExt::size(&m), std::os::unix::fs::MetadataExt::blocks(&m) * 512)
    });
    let _ =
        writeln!(out, "memory file: {} ({len} bytes, {allocated} allocated on disk), checksums ok", mem_path.display());
    Ok(0)
}

pub(super) fn bench(
    rounds: u32,
    boots: u32,
    only: &[BenchPart],
    repeat: u32,
    out: &mut dyn Write,
) -> Result<(), VmError> {
    let wants = |p| only.is_empty() || only.contains(&p);
    if wants(BenchPart::Exits) {
        let _ = crate::bench::run(rounds, boots)?.render(out);
    }
    if wants(BenchPart::Smp) {
        let _ = crate::bench::ipi(repeat.max(5))?.render(out);
    }
    if wants(BenchPart::Snapshot) {
        let figures = [crate::statebench::snapshot(128, repeat)?, crate::statebench::snapshot(2048, repeat)?];
        let _ = crate::statebench::render_snapshots(&figures, out);
    }
    if wants(BenchPart::Migration) {
        let figures = [1, 16, 64]
            .map(|mib| crate::statebench::migration(mib, repeat))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let _ = crate::statebench::render_migrations(&figures, out);
    }
    Ok(())
}

/// The words of `vmm supervise`'s command line its children get: the guest
/// and the options only `vmm run` takes, and the run options every child
/// takes (those `vmm standby` has too); the supervisor's own options and
/// those it sets for each child are left out.
pub(super) fn supervised_child_args(args: &[&str]) -> crate::ft::supervisor::ChildArgs {
    use clap::{Args, CommandFactory};
    let owned = ["max_restarts", "metrics", "checkpoint_every", "checkpoint_dir", "heartbeat_ms", "attempt"];
    let owned = [&owned[..], &["checkpoint_seq", "supervised", "resumed"]].concat();
    let command = Cli::command();
    let policy = crate::ft::supervisor::SuperviseFlags::augment_args(clap::Command::new("policy"));
    let standby =
        command.find_subcommand("standby").map(|c| c.get_arguments().map(|a| a.get_id().to_string()).collect());
    let standby: Vec<String> = standby.unwrap_or_default();
    let mut out = crate::ft::supervisor::ChildArgs::default();
    let Ok(matches) = command.clone().try_get_matches_from(std::iter::once("vmm").chain(args.iter().copied())) else {
        return out;
    };
    let (Some(sub), Some(sub_command)) =
        (matches.subcommand_matches("supervise"), command.find_subcommand("supervise"))
    else {
        return out;
    };
    for arg in sub_command.get_arguments() {
        let id = arg.get_id().as_str();
        let given = sub.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        if !given || owned.contains(&id) || policy.get_arguments().any(|a| a.get_id() == id) {
            continue;
        }
        let words = if standby.iter().any(|s| s == id) { &mut out.flags } else { &mut out.boot };
        let long = arg.get_long().map(|l| format!("--{l}"));
        let raw: Vec<String> =
            sub.get_raw(id).map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect()).unwrap_or_default();
        match (long, arg.get_action().takes_values()) {
            (None, _) => words.extend(raw),
            (Some(long), true) => raw.into_iter().for_each(|v| words.extend([long.clone(), v])),
            (Some(long), false) => words.push(long),
        }
    }
    out
}

/// The fault-tolerance figures: the quick ones by default, the long ones when asked for.
pub(super) fn ft_bench(
    only: &[BenchPart],
    repeat: u32,
    plot: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), VmError> {
    use crate::ft::bench::Figure;
    let parts = [
        (BenchPart::Detection, Figure::Detection, true),
        (BenchPart::Failover, Figure::Failover, true),
        (BenchPart::Checkpoint, Figure::Checkpoint, true),
        (BenchPart::Backoff, Figure::Backoff, true),
        (BenchPart::Heartbeat, Figure::Heartbeat, false),
        (BenchPart::OutputCommit, Figure::OutputCommit, false),
    ];
    for (part, figure, by_default) in parts {
        if only.contains(&part) || (only.is_empty() && by_default) {
            crate::ft::bench::run(figure, repeat, plot, out)?;
        }
    }
    Ok(())
}
