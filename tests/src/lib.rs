//! Helpers shared by the integration tests in `tests/tests/`.
#![allow(clippy::print_stderr)]

use std::io::Write;
use std::path::{Path, PathBuf};

pub mod diff;
pub mod gen;

/// The environment variable that lets the KVM tests be skipped, visibly:
/// `VIRTLAB_SKIP_KVM_TESTS=1`.
pub const SKIP_KVM_TESTS: &str = "VIRTLAB_SKIP_KVM_TESTS";

/// True if this machine has a usable /dev/kvm. Where it has none, a test
/// that needs KVM fails here, unless `VIRTLAB_SKIP_KVM_TESTS=1` asks to skip
/// the KVM tests: then this prints "skipped: no /dev/kvm
/// (VIRTLAB_SKIP_KVM_TESTS set)" and returns false, and the test returns.
/// So a run without KVM never passes by silently skipping them.
pub fn kvm_available() -> bool {
    let skip = std::env::var_os(SKIP_KVM_TESTS).is_some_and(|v| v == "1");
    kvm_device_usable(Path::new("/dev/kvm"), skip)
}

/// [`kvm_available`] for the device at `device` (the unit tests point it
/// at a missing path).
fn kvm_device_usable(device: &Path, skip: bool) -> bool {
    let why = match std::fs::OpenOptions::new().read(true).write(true).open(device) {
        Ok(_) => return true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("no {}", device.display()),
        Err(e) => format!("{} is not usable: {e}", device.display()),
    };
    assert!(
        skip,
        "{why}: this test needs KVM (load kvm_intel or kvm_amd and make {} readable and writable); \
         set {SKIP_KVM_TESTS}=1 to skip the KVM tests explicitly",
        device.display()
    );
    eprintln!("skipped: {why} ({SKIP_KVM_TESTS} set)");
    false
}

/// True if `program` (a peer such as `qemu-system-x86_64` or `gdb`) runs
/// with `--version`. Where it does not, a test that compares with it is
/// skipped with a line saying so, except in CI (`CI` set), where it fails:
/// `.ci/run` installs the peers, so CI never skips them silently.
pub fn peer_available(program: &str, package: &str) -> bool {
    let runs = std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if runs {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{program} is not installed and CI must run this test: apt-get install {package}"
    );
    eprintln!("skipped: {program} is not installed (apt-get install {package})");
    false
}

/// The environment variable that lets the tests that need Node.js be
/// skipped, visibly: `VIRTLAB_SKIP_NODE_TESTS=1`.
pub const SKIP_NODE_TESTS: &str = "VIRTLAB_SKIP_NODE_TESTS";

/// True if `node` runs here. Where it does not, a test that needs it fails
/// here, unless `VIRTLAB_SKIP_NODE_TESTS=1` asks to skip the Node tests:
/// then this prints "skipped: no node (VIRTLAB_SKIP_NODE_TESTS set)" and
/// returns false, and the test returns. Like [`kvm_available`].
pub fn node_available() -> bool {
    let skip = std::env::var_os(SKIP_NODE_TESTS).is_some_and(|v| v == "1");
    tool_usable("node", skip)
}

/// [`node_available`] for the program `tool` (the unit tests name a missing one).
fn tool_usable(tool: &str, skip: bool) -> bool {
    let why = match std::process::Command::new(tool).arg("--version").output() {
        Ok(o) if o.status.success() => return true,
        Ok(o) => format!("`{tool} --version` failed with {}", o.status),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("no {tool}"),
        Err(e) => format!("{tool} cannot run: {e}"),
    };
    assert!(
        skip,
        "{why}: this test needs Node.js 20 or newer (apt-get install nodejs); \
         set {SKIP_NODE_TESTS}=1 to skip the Node tests explicitly"
    );
    // Straight to the process's stderr, so the line shows even though libtest captures eprintln!.
    let _ = writeln!(std::io::stderr(), "skipped: {why} ({SKIP_NODE_TESTS} set)");
    false
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
    vmm_with_input(args, "")
}

/// The same, typing `input` on the guest's serial port.
pub fn vmm_with_input(args: &[&str], input: &'static str) -> Outcome {
    let out = vmm::SharedBuffer::default();
    let mut err = Vec::new();
    let status = vmm::cli::main_with(args, Some(Box::new(input.as_bytes())), Box::new(out.clone()), &mut err);
    Outcome {
        status,
        stdout: String::from_utf8_lossy(&out.take()).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

/// Runs the `pvm` command line in-process with empty stdin, capturing the
/// guest's stdout (and the command's own reports) and stderr. `run` gets
/// `--no-seccomp`: the filter is per thread and would stay on the test's
/// thread after the run; `tests/tests/pvm_sandbox.rs` runs the real binary with it.
pub fn pvm(args: &[&str]) -> Outcome {
    let mut io = pvm::machine::BufferIo::default();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut args = args.to_vec();
    if args.first() == Some(&"run") {
        args.push("--no-seccomp");
    }
    let status = pvm::cli::main_with(&args, &mut io, &mut out, &mut err);
    let mut stdout = String::from_utf8_lossy(&io.output).into_owned();
    stdout.push_str(&String::from_utf8_lossy(&out));
    Outcome { status, stdout, stderr: String::from_utf8_lossy(&err).into_owned() }
}

/// The path of the workspace's real `name` binary (`vmm` or `pvm`), built
/// by cargo in this test's profile first (once per test process): the
/// tests of a whole-process property, such as a seccomp filter or a death
/// by signal, run it as a child process.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test binary>
    let profile_dir = exe.parent().and_then(Path::parent).expect("the test binary is in target/<profile>/deps");
    let path = profile_dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if built.iter().any(|b| b == name) {
        return path;
    }
    let profile = match profile_dir.file_name().and_then(|p| p.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let target_dir = profile_dir.parent().expect("target/<profile>");
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--profile", profile, "-p", name, "--bin", name])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p {name} failed");
    built.push(name.to_string());
    path
}

/// Runs the real `name` binary (see [`binary`]) as a child process with
/// `input` on its stdin, capturing its output; fails the test if a signal
/// killed it.
pub fn process(name: &str, args: &[&str], input: &[u8]) -> Outcome {
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let mut child = Command::new(binary(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    // (a child that ends without reading its input closes the pipe)
    let _ = stdin.write_all(input);
    drop(stdin);
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("wait for {name}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.signal(), None, "{name} {args:?} was killed by a signal: {stderr}");
    Outcome {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// A path for `name` in a fresh per-process directory under the temp dir.
pub fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("virtlab-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// Writes `bytes` to the file `temp_path(name)` and returns its path. The
/// bytes go to a file of their own first and are renamed into place: tests
/// run in parallel threads, and a second test writing the same name in
/// place would truncate the file under the first one's reader (CI saw the
/// verifier reject a half-written `hello.wasm` as "code section is empty").
/// The path stays the same for the same name, so a program that prints its
/// `argv[0]` prints the same on every run.
pub fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = temp_path(name);
    let staging = temp_path(&format!(".{n}.partial"));
    std::fs::write(&staging, bytes).expect("write temp file");
    std::fs::rename(&staging, &path).expect("rename temp file into place");
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

use pvm::image::{Image, Section, CODE_BASE};
use pvm::isa::{Instr, Opcode, INSTR_SIZE};

/// A random but encodable instruction; targets usually land on the code.
pub fn random_instr(rng: &mut Rng, len: u64) -> Instr {
    let op = *rng.pick(Opcode::ALL);
    let imm = match rng.below(4) {
        0 => (CODE_BASE + rng.below(len) * INSTR_SIZE) as i32,
        1 => rng.below(64) as i32 - 32,
        2 => (0x10_0000 - rng.below(64)) as i32,
        _ => rng.next_u64() as i32,
    };
    let imm = if op == Opcode::Sys { rng.below(7) as i32 } else { imm };
    let store = matches!(op, Opcode::St8 | Opcode::St16 | Opcode::St32 | Opcode::St64);
    if store && rng.below(3) == 0 {
        // r13 holds all ones and r14 zero (see the prologue): a store into the code
        return Instr::new(op, 13, 14, 0, (CODE_BASE + rng.below(len) * INSTR_SIZE) as i32);
    }
    Instr::new(op, rng.below(16) as u8, rng.below(16) as u8, rng.below(16) as u8, imm)
}

/// A random program of `len` instructions after a prologue that sets r13
/// to all ones and r14 to zero (so some stores land in the code), with a
/// small data section.
pub fn random_program(rng: &mut Rng, len: u64) -> Image {
    let prologue = [Instr::new(Opcode::Li, 13, 0, 0, -1), Instr::new(Opcode::Li, 14, 0, 0, 0)];
    let body: Vec<Instr> = (0..len).map(|_| random_instr(rng, len + 2)).collect();
    let code: Vec<u8> = prologue.iter().chain(&body).flat_map(Instr::encode).collect();
    let data = Section { addr: (CODE_BASE + (len + 2) * 8).next_multiple_of(16), bytes: vec![7; 64] };
    Image::new(CODE_BASE, Section { addr: CODE_BASE, bytes: code }, vec![data])
}

/// A built-in pvm program, assembled and verified.
pub fn builtin_image(name: &str) -> Image {
    let p = pvm::programs::find(name).unwrap_or_else(|| panic!("no built-in program {name}"));
    pvm::run::build(p.name, p.kind, p.source.as_bytes(), pvm::run::LoadOptions::default()).expect("builds")
}

/// The built-in thread programs whose output does not depend on how their
/// threads interleave (the `threads_*` programs that exit with 0 and take
/// no arguments: not the racy counter, which needs `--quantum 1`, nor the
/// deadlocks), by name, with their expected output.
pub fn synchronized_thread_programs() -> Vec<(&'static str, String)> {
    pvm::programs::PROGRAMS
        .iter()
        .filter(|p| p.name.starts_with("threads_"))
        .map(|p| (p.name, p.expectation()))
        .filter(|(_, e)| e.status == 0 && e.trap.is_none() && e.args.is_empty())
        .map(|(name, e)| (name, e.stdout))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MISSING: &str = "/nonexistent/dev/kvm";

    #[test]
    fn a_missing_kvm_device_fails_the_test_unless_skipping_is_asked_for() {
        let failed = std::panic::catch_unwind(|| kvm_device_usable(Path::new(MISSING), false));
        let message = failed.expect_err("a missing device must fail the test");
        let message = message.downcast_ref::<String>().expect("a formatted message");
        assert!(message.starts_with("no /nonexistent/dev/kvm: this test needs KVM"), "{message}");
        assert!(message.ends_with("set VIRTLAB_SKIP_KVM_TESTS=1 to skip the KVM tests explicitly"), "{message}");
    }

    #[test]
    fn a_missing_node_fails_the_test_unless_skipping_is_asked_for() {
        let failed = std::panic::catch_unwind(|| tool_usable("/nonexistent/node", false));
        let message = failed.expect_err("a missing node must fail the test");
        let message = message.downcast_ref::<String>().expect("a formatted message");
        assert!(message.starts_with("no /nonexistent/node: this test needs Node.js"), "{message}");
        assert!(message.ends_with("set VIRTLAB_SKIP_NODE_TESTS=1 to skip the Node tests explicitly"), "{message}");
        assert!(!tool_usable("/nonexistent/node", true));
    }

    #[test]
    fn a_missing_kvm_device_is_skipped_when_asked_to() {
        assert!(!kvm_device_usable(Path::new(MISSING), true));
    }

    #[test]
    fn a_device_that_cannot_be_opened_read_write_is_not_usable() {
        // A directory exists but cannot be opened for writing.
        let failed = std::panic::catch_unwind(|| kvm_device_usable(Path::new("/"), false));
        let message = failed.expect_err("an unusable device must fail the test");
        let message = message.downcast_ref::<String>().expect("a formatted message");
        assert!(message.starts_with("/ is not usable: "), "{message}");
        assert!(!kvm_device_usable(Path::new("/"), true));
    }
}
