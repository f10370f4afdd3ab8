//! Helpers shared by the integration tests in `tests/tests/`.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

/// True if this machine has /dev/kvm. Tests that need it print
/// "skipped: no /dev/kvm" and return where it is missing; `.ci/run`
/// refuses to run without it, so CI never skips them silently.
pub fn kvm_available() -> bool {
    let present = Path::new("/dev/kvm").exists();
    if !present {
        eprintln!("skipped: no /dev/kvm");
    }
    present
}

/// What one `vmm` command line did.
#[derive(Debug)]
pub struct Outcome {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `vmm` command line in-process (the binary is a thin wrapper
/// around `vmm::cli::main_with`), capturing its output.
pub fn vmm(args: &[&str]) -> Outcome {
    let out = vmm::SharedBuffer::default();
    let mut err = Vec::new();
    let status = vmm::cli::main_with(args, Box::new(out.clone()), &mut err);
    Outcome {
        status,
        stdout: String::from_utf8_lossy(&out.take()).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

/// Writes `bytes` to a fresh file under the system temp dir and returns its path.
pub fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmm-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write temp file");
    path
}

/// A small xorshift generator: reproducible random inputs without a crate.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}
