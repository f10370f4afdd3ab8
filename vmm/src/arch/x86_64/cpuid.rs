//! Filtering the CPUID table KVM supports before the vCPU gets it: the
//! features `--cpuid-mask` names are cleared, with the features that
//! cannot work without them (AVX without XSAVE, ...), as Firecracker and
//! Cloud Hypervisor filter theirs. A nested or software-assisted KVM may
//! advertise features its instruction emulator cannot run at CPL0 (here:
//! CMPXCHG16B and XSAVE), which a kernel then uses and dies on.

use kvm_bindings::kvm_cpuid_entry2;

/// A CPUID register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    Ebx,
    Ecx,
    Edx,
}

/// One feature bit: its name as `--cpuid-mask` takes it, leaf, sub-leaf, register, bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub leaf: u32,
    pub index: u32,
    pub reg: Reg,
    pub bit: u32,
    /// Features that need this one, cleared with it.
    pub needed_by: &'static [&'static str],
}

const fn f(name: &'static str, leaf: u32, reg: Reg, bit: u32, needed_by: &'static [&'static str]) -> Feature {
    Feature { name, leaf, index: 0, reg, bit, needed_by }
}

/// The features `--cpuid-mask` knows.
pub const FEATURES: &[Feature] = &[
    f("sse3", 1, Reg::Ecx, 0, &[]),
    f("pclmulqdq", 1, Reg::Ecx, 1, &[]),
    f("monitor", 1, Reg::Ecx, 3, &[]),
    f("vmx", 1, Reg::Ecx, 5, &[]),
    f("ssse3", 1, Reg::Ecx, 9, &[]),
    f("fma", 1, Reg::Ecx, 12, &[]),
    f("cx16", 1, Reg::Ecx, 13, &[]),
    f("pcid", 1, Reg::Ecx, 17, &[]),
    f("sse4.1", 1, Reg::Ecx, 19, &[]),
    f("sse4.2", 1, Reg::Ecx, 20, &[]),
    f("x2apic", 1, Reg::Ecx, 21, &[]),
    f("movbe", 1, Reg::Ecx, 22, &[]),
    f("popcnt", 1, Reg::Ecx, 23, &[]),
    f("tsc-deadline", 1, Reg::Ecx, 24, &[]),
    f("aes", 1, Reg::Ecx, 25, &[]),
    f("xsave", 1, Reg::Ecx, 26, &["osxsave", "avx", "fma", "f16c", "avx2", "avx512f", "pku"]),
    f("osxsave", 1, Reg::Ecx, 27, &[]),
    f("avx", 1, Reg::Ecx, 28, &["fma", "f16c", "avx2", "avx512f"]),
    f("f16c", 1, Reg::Ecx, 29, &[]),
    f("rdrand", 1, Reg::Ecx, 30, &[]),
    f("fsgsbase", 7, Reg::Ebx, 0, &[]),
    f("bmi1", 7, Reg::Ebx, 3, &[]),
    f("avx2", 7, Reg::Ebx, 5, &[]),
    f("smep", 7, Reg::Ebx, 7, &[]),
    f("bmi2", 7, Reg::Ebx, 8, &[]),
    f("erms", 7, Reg::Ebx, 9, &[]),
    f("invpcid", 7, Reg::Ebx, 10, &[]),
    f("avx512f", 7, Reg::Ebx, 16, &[]),
    f("rdseed", 7, Reg::Ebx, 18, &[]),
    f("smap", 7, Reg::Ebx, 20, &[]),
    f("pku", 7, Reg::Ecx, 3, &[]),
    f("la57", 7, Reg::Ecx, 16, &[]),
    f("rdpid", 7, Reg::Ecx, 22, &[]),
    f("pdpe1gb", 0x8000_0001, Reg::Edx, 26, &[]),
    f("rdtscp", 0x8000_0001, Reg::Edx, 27, &[]),
];

/// Errors of `--cpuid-mask`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpuidError {
    #[error("--cpuid-mask: unknown feature {name:?}; known: {known}")]
    Unknown { name: String, known: String },
}

/// Parses a comma-separated list of feature names (`cx16,xsave`).
///
/// # Errors
///
/// [`CpuidError::Unknown`] for a name not in [`FEATURES`], listing them.
pub fn parse_mask(list: &str) -> Result<Vec<&'static Feature>, CpuidError> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|name| {
            FEATURES.iter().find(|f| f.name.eq_ignore_ascii_case(name)).ok_or_else(|| CpuidError::Unknown {
                name: name.to_string(),
                known: FEATURES.iter().map(|f| f.name).collect::<Vec<_>>().join(", "),
            })
        })
        .collect()
}

/// The features `masked` names, and every feature that needs one of them.
pub fn with_dependents(masked: &[&'static Feature]) -> Vec<&'static Feature> {
    let mut out: Vec<&'static Feature> = Vec::new();
    let mut todo: Vec<&'static Feature> = masked.to_vec();
    while let Some(feature) = todo.pop() {
        if out.iter().any(|f| f.name == feature.name) {
            continue;
        }
        out.push(feature);
        todo.extend(FEATURES.iter().filter(|f| feature.needed_by.contains(&f.name)));
    }
    out
}

/// Clears the `masked` features and their dependents in `entries`; with
/// XSAVE masked, the XSAVE leaf 0xd is emptied too.
pub fn apply_mask(entries: &mut [kvm_cpuid_entry2], masked: &[&'static Feature]) {
    let all = with_dependents(masked);
    for feature in &all {
        for e in entries.iter_mut().filter(|e| e.function == feature.leaf && e.index == feature.index) {
            let reg = match feature.reg {
                Reg::Ebx => &mut e.ebx,
                Reg::Ecx => &mut e.ecx,
                Reg::Edx => &mut e.edx,
            };
            *reg &= !(1 << feature.bit);
        }
    }
    if all.iter().any(|f| f.name == "xsave") {
        for e in entries.iter_mut().filter(|e| e.function == 0xd) {
            (e.eax, e.ebx, e.ecx, e.edx) = (0, 0, 0, 0);
        }
    }
}

/// Gives vCPU `id` of `count` its APIC id in the CPUID table, as the MP
/// table lists it: leaf 1 EBX bits 31-24 (initial APIC id) and bits 23-16
/// (logical processors, with HTT set when there are several), and EDX of
/// every subleaf of the topology leaves 0xB and 0x1F (x2APIC id).
pub fn set_apic_id(entries: &mut [kvm_cpuid_entry2], id: u32, count: u32) {
    for e in entries.iter_mut() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | ((id & 0xff) << 24) | ((count.min(0xff)) << 16);
                if count > 1 {
                    e.edx |= 1 << 28; // HTT: the logical-processor count is valid
                }
            }
            0xb | 0x1f => e.edx = id,
            _ => {}
        }
    }
}

/// The `--cpuid-mask` feature an instruction belongs to, for the
/// diagnosis of a run that failed on it: a nested KVM may offer a feature
/// in CPUID whose instructions its emulator cannot run. `text` is the
/// disassembled instruction.
pub fn feature_of_instruction(text: &str) -> Option<&'static str> {
    let mnemonic = text.split_whitespace().next()?;
    match mnemonic {
        "xgetbv" | "xsetbv" => Some("xsave"),
        m if m.starts_with("xsave") || m.starts_with("xrstor") => Some("xsave"),
        m if m.starts_with("cmpxchg16b") => Some("cx16"),
        "rdrand" => Some("rdrand"),
        "rdseed" => Some("rdseed"),
        "rdpid" => Some("rdpid"),
        "rdtscp" => Some("rdtscp"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_name_the_feature_to_mask() {
        assert_eq!(feature_of_instruction("xgetbv"), Some("xsave"));
        assert_eq!(feature_of_instruction("xsaveopt [rsp]"), Some("xsave"));
        assert_eq!(feature_of_instruction("cmpxchg16b [rdi]"), Some("cx16"));
        assert_eq!(feature_of_instruction("mov eax,1"), None);
        assert_eq!(feature_of_instruction(""), None);
        for name in ["xsave", "cx16", "rdrand", "rdseed", "rdpid", "rdtscp"] {
            assert!(FEATURES.iter().any(|f| f.name == name), "{name}");
        }
    }

    fn entry(function: u32, ecx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 { function, ecx, ebx: u32::MAX, eax: 7, ..Default::default() }
    }

    #[test]
    fn masking_xsave_clears_what_needs_it_and_leaf_0xd() {
        let mask = parse_mask("cx16, XSAVE").unwrap();
        let mut entries = [entry(1, u32::MAX), entry(7, 0), entry(0xd, 3)];
        apply_mask(&mut entries, &mask);
        let cleared = (1 << 13) | (1 << 26) | (1 << 27) | (1 << 28) | (1 << 12) | (1 << 29);
        assert_eq!(entries[0].ecx, !cleared);
        assert_eq!(entries[1].ebx, !((1 << 5) | (1 << 16)), "avx2 and avx512f");
        assert_eq!((entries[2].eax, entries[2].ebx, entries[2].ecx), (0, 0, 0));
    }

    #[test]
    fn each_vcpu_gets_its_apic_id_in_leaves_1_and_0xb() {
        let mut entries = [entry(1, 0), entry(0xb, 0), entry(0xb, 1), entry(4, 0)];
        entries[0].ebx = 0xab00_1234;
        set_apic_id(&mut entries, 3, 4);
        assert_eq!(entries[0].ebx, 0x0304_1234, "APIC id 3, 4 logical CPUs, low half kept");
        assert_ne!(entries[0].edx & (1 << 28), 0);
        assert_eq!((entries[1].edx, entries[2].edx), (3, 3));
        assert_eq!(entries[3].ebx, u32::MAX, "other leaves untouched");
        set_apic_id(&mut entries, 0, 1);
        assert_eq!(entries[0].ebx >> 24, 0);
    }

    #[test]
    fn an_unknown_feature_is_refused_with_the_list() {
        let e = parse_mask("cx16,warp-drive").unwrap_err();
        assert!(e.to_string().contains("unknown feature \"warp-drive\"; known: sse3,"), "{e}");
        assert_eq!(parse_mask("").unwrap(), Vec::<&Feature>::new());
    }

    #[test]
    fn every_feature_named_as_a_dependent_exists() {
        for f in FEATURES {
            for d in f.needed_by {
                assert!(FEATURES.iter().any(|g| g.name == *d), "{} names {d}", f.name);
            }
        }
    }
}
