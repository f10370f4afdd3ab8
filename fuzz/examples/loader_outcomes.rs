//! `cargo +nightly run --example loader_outcomes -- DIR...`: how
//! `vmm::loader::load_elf` ends on every ELF input of `vmm_loader` corpora
//! (the files of DIR), counted by input kind (raw file or edited built-in
//! image) and outcome. It shows which checks of the program-header and
//! note parsers the corpus reaches; the loader target's input format is
//! described in `fuzz_targets/vmm_loader.rs`.

use std::collections::BTreeMap;

use vmm::arch::x86_64::layout::{self, Region};
use vmm::loader::{load_elf, LoaderError};

/// The regions `vmm::boot` keeps ELF segments clear of.
const RESERVED: [Region; 4] =
    [layout::GDT_REGION, layout::PVH_REGION, layout::PAGE_TABLE_REGION, layout::BOOT_STACK_REGION];

fn outcome(r: Result<vmm::loader::LoadedElf, LoaderError>) -> String {
    match r {
        Ok(l) if l.entry.pvh => "ok: PVH note entry".into(),
        Ok(l) => format!("ok: e_entry, {:?} mode", l.entry.mode),
        Err(LoaderError::MalformedElf(why)) => format!("malformed: {why}"),
        Err(LoaderError::SegmentOutsideRam { .. }) => "segment partly outside RAM".into(),
        Err(LoaderError::NothingInRam { .. }) => "no segment in RAM".into(),
        Err(LoaderError::SegmentOverVmm { .. }) => "segment over the VMM's structures".into(),
        Err(LoaderError::WrongMachine(_)) => "not x86".into(),
        Err(e) => e.to_string(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut counts: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for dir in std::env::args().skip(1) {
        for entry in std::fs::read_dir(&dir)? {
            let data = std::fs::read(entry?.path())?;
            let [which, mib, rest @ ..] = data.as_slice() else { continue };
            let mem = vmm::memory::create(u64::from(mib % 8) + 1)?;
            let ram = vmm::memory::ram_size(&mem);
            let (kind, image) = match which % 3 {
                0 => ("raw", rest.to_vec()),
                2 => match virtlab_fuzz::elf::edited_image(rest, ram) {
                    Some(image) => ("edited", image),
                    None => continue,
                },
                _ => continue,
            };
            *counts.entry((kind, outcome(load_elf(&mem, &image, &RESERVED)))).or_default() += 1;
        }
    }
    for ((kind, outcome), n) in counts {
        println!("{kind:>6} {n:>6}  {outcome}");
    }
    Ok(())
}
