//! Property tests: whatever the input, loading and running end in a clean
//! result or a clean error, never a panic.

use pvm::image::Image;
use pvm::interp::Outcome;
use pvm::machine::BufferIo;
use pvm::run::{self, LoadError, LoadOptions};
use tests::Rng;

const CASES: u64 = 3000;

fn run_to_end(image: &Image) -> Outcome {
    try_run(image).expect("a verified image of 1 MiB loads")
}

fn try_run(image: &Image) -> Result<Outcome, LoadError> {
    let mut io = BufferIo { input: b"some input".to_vec(), ..Default::default() };
    let cfg = run::RunConfig { mem_mib: 1, fuel: Some(20_000), ..Default::default() };
    run::run_image(image, &cfg, None, None, &mut io).map(|r| r.outcome)
}

/// What the bytes of one case are, and so what loading them must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// No "PVMB" magic: the bytes are assembler source, and not valid source.
    Text,
    /// "PVMB" and a version other than 1.
    WrongVersion(u16),
    /// A version-1 header followed by random bytes.
    RandomAfterHeader,
    /// A valid image cut short, to this many bytes.
    Truncated(usize),
    /// A valid image with this many bytes appended.
    Appended(usize),
    /// A valid image whose code section's kind was set to this.
    CodeKind(u32),
    /// A valid image whose section `index` is `delta` bytes longer (or shorter).
    SectionLength { index: usize, delta: i64 },
    /// A valid image whose entry was set to this address.
    Entry(u64),
    /// A valid image with a section moved, a byte of a payload flipped, or its section count changed.
    Anything,
}

/// A short name for what happened, for the tally and the messages.
fn key(result: &Result<Outcome, LoadError>) -> String {
    let name = |debug: String| debug.split(['(', ' ', '{']).next().unwrap_or_default().to_string();
    match result {
        Ok(Outcome::Exited(_)) => "ran: exited".into(),
        Ok(Outcome::Returned) => "ran: returned".into(),
        Ok(Outcome::ThreadOp) => "ran: stopped at a thread instruction".into(),
        Ok(Outcome::Trapped(t)) => format!("ran: {}", name(format!("{:?}", t.kind))),
        Err(LoadError::Asm(_)) => "asm".into(),
        Err(LoadError::Image { source, .. }) => format!("image: {}", name(format!("{source:?}"))),
        Err(LoadError::Verify { source, .. }) => format!("verify: {}", name(format!("{source:?}"))),
        Err(LoadError::Machine(e)) => format!("machine: {}", name(format!("{e:?}"))),
        Err(e) => format!("other: {e}"),
    }
}

fn put(bytes: &mut [u8], at: usize, value: &[u8]) {
    bytes[at..at + value.len()].copy_from_slice(value);
}

/// Makes the bytes of one case of kind `pick` from the valid `image`.
fn make_case(rng: &mut Rng, pick: u64, image: &Image) -> (Case, Vec<u8>) {
    const HEADER: usize = 16;
    const SECTION_HEADER: usize = 24;
    let random = |rng: &mut Rng, n: u64| -> Vec<u8> { (0..rng.below(n)).map(|_| rng.next_u64() as u8).collect() };
    let mut bytes = image.to_bytes();
    let sections = 1 + image.data.len();
    let case = match pick {
        0 => {
            let mut text = random(rng, 200);
            text.insert(0, b'%'); // no mnemonic, label or directive starts with it
            return (Case::Text, text);
        }
        1 => {
            let version = 2 + rng.below(u64::from(u16::MAX) - 1) as u16;
            put(&mut bytes, 4, &version.to_le_bytes());
            Case::WrongVersion(version)
        }
        2 => {
            let mut head = b"PVMB\x01\x00".to_vec();
            head.extend([rng.below(3) as u8, 0]);
            head.extend(random(rng, 200));
            return (Case::RandomAfterHeader, head);
        }
        3 => {
            bytes.truncate(rng.below(bytes.len() as u64) as usize);
            Case::Truncated(bytes.len())
        }
        4 => {
            let extra = random(rng, 64);
            bytes.extend(&extra);
            Case::Appended(extra.len())
        }
        5 => {
            let any = rng.next_u64() as u32;
            let kind = *rng.pick(&[0, 2, 3, 0xffff_ffff, any]);
            put(&mut bytes, HEADER, &kind.to_le_bytes());
            Case::CodeKind(kind)
        }
        6 => {
            let index = rng.below(sections as u64) as usize;
            let at = HEADER + index * SECTION_HEADER + 16;
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            let delta = (rng.below(33) as i64 - 16).max(-(len as i64));
            put(&mut bytes, at, &(len as i64 + delta).to_le_bytes());
            Case::SectionLength { index, delta }
        }
        7 => {
            let entry = match rng.below(3) {
                0 => image.code.addr + rng.below(image.code.bytes.len() as u64 + 16),
                1 => rng.next_u64(),
                _ => image.code.addr + 8 * rng.below(image.code.bytes.len() as u64 / 8),
            };
            put(&mut bytes, 8, &entry.to_le_bytes());
            Case::Entry(entry)
        }
        _ => {
            match rng.below(3) {
                0 => {
                    let at = HEADER + rng.below(sections as u64) as usize * SECTION_HEADER + 8;
                    let any = rng.next_u64();
                    let addr = *rng.pick(&[0, 8, 0x1000, 0x2000, 0xf_fff8, 0x10_0000, any]);
                    put(&mut bytes, at, &addr.to_le_bytes());
                }
                1 => {
                    let payload = HEADER + sections * SECTION_HEADER;
                    let at = payload + rng.below((bytes.len() - payload) as u64) as usize;
                    bytes[at] ^= 1 << rng.below(8);
                }
                _ => put(&mut bytes, 6, &(rng.below(4) as u16).to_le_bytes()),
            }
            Case::Anything
        }
    };
    (case, bytes)
}

/// Checks that `got` is what loading and running a case of kind `case` must give.
fn check(case: Case, image: &Image, got: &Result<Outcome, LoadError>) -> bool {
    use pvm::image::ImageError as E;
    use pvm::verify::VerifyError as V;
    let image_error = |e: &E| matches!(got, Err(LoadError::Image { source, .. }) if source == e);
    let ran = got.is_ok();
    match case {
        Case::Text => matches!(got, Err(LoadError::Asm(_))),
        Case::WrongVersion(v) => image_error(&E::BadVersion(v)),
        Case::RandomAfterHeader => matches!(
            got,
            Err(LoadError::Image { source, .. }) if !matches!(source, E::BadMagic | E::BadVersion(_))
        ),
        // Empty source assembles to no code; "P", "PV" and "PVM" are source too.
        Case::Truncated(0) => matches!(got, Err(LoadError::Verify { source: V::EmptyCode, .. })),
        Case::Truncated(1..4) => matches!(got, Err(LoadError::Asm(_))),
        Case::Truncated(_) => matches!(got, Err(LoadError::Image { source: E::Truncated(_), .. })),
        Case::Appended(0) => ran,
        Case::Appended(n) => image_error(&E::TrailingBytes(n)),
        Case::CodeKind(2) => image_error(&E::CodeSection),
        Case::CodeKind(kind) => image_error(&E::BadSectionKind { index: 0, kind }),
        Case::SectionLength { delta: 0, .. } => ran,
        Case::SectionLength { delta, .. } if delta > 0 => {
            matches!(got, Err(LoadError::Image { source: E::Truncated(_), .. }))
        }
        Case::SectionLength { delta, .. } => image_error(&E::TrailingBytes(delta.unsigned_abs() as usize)),
        Case::Entry(entry) => {
            let code = &image.code;
            let valid = entry >= code.addr && entry < code.addr + code.bytes.len() as u64 && entry % 8 == 0;
            if valid {
                ran
            } else {
                matches!(got, Err(LoadError::Verify { source: V::BadEntry { entry: e, .. }, .. }) if *e == entry)
            }
        }
        Case::Anything => {
            ran || matches!(got, Err(LoadError::Image { .. } | LoadError::Verify { .. } | LoadError::Machine(_)))
        }
    }
}

#[test]
fn random_and_mutated_images_end_in_the_error_their_bytes_call_for_or_run_cleanly() {
    let valid: Vec<Image> = pvm::programs::PROGRAMS
        .iter()
        .filter(|p| p.kind == "pasm")
        .map(|p| run::load(p.name, LoadOptions::default()).expect("a built-in program loads"))
        .filter(|image| try_run(image).is_ok()) // the ones that fit in 1 MiB
        .collect();
    assert!(valid.len() >= 10, "only {} built-in programs fit in 1 MiB", valid.len());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for case in 0..CASES {
        let image = &valid[case as usize % valid.len()];
        let pick = rng.below(11);
        let (kind, bytes) = make_case(&mut rng, pick, image);
        let got = run::build("random", "pasm", &bytes, LoadOptions::default()).and_then(|i| try_run(&i));
        assert!(check(kind, image, &got), "case {case} ({kind:?}) ended in {}: {got:?}", key(&got));
        *seen.entry(key(&got)).or_default() += 1;
    }
    // The cases get past the header: into the section table, the payloads,
    // the verifier, the memory layout and the run itself.
    for want in [
        "asm",
        "image: BadVersion",
        "image: Truncated",
        "image: TrailingBytes",
        "image: BadSectionKind",
        "image: CodeSection",
        "verify: BadEntry",
        "verify: BadInstruction",
        "verify: BadTarget",
        "verify: Misaligned",
        "verify: Overlap",
        "machine: SectionTooLarge",
        "ran: exited",
        "ran: FuelExhausted",
    ] {
        assert!(seen.get(want).copied().unwrap_or(0) > 0, "no case ended in {want:?}: {seen:#?}");
    }
    assert!(seen.keys().filter(|k| k.starts_with("ran: ")).count() >= 2, "{seen:#?}");
}

#[test]
fn random_instruction_sequences_end_cleanly() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut outcomes = std::collections::BTreeMap::new();
    for _ in 0..CASES {
        let len = 1 + rng.below(40);
        let image = tests::random_program(&mut rng, len);
        let Ok(()) = pvm::verify::verify(&image) else { continue };
        let key = match run_to_end(&image) {
            Outcome::Exited(_) => "exited".to_string(),
            Outcome::Returned => "returned".to_string(),
            Outcome::ThreadOp => "thread op".to_string(),
            Outcome::Trapped(t) => format!("{:?}", t.kind).split(['(', ' ']).next().unwrap().to_string(),
        };
        *outcomes.entry(key).or_insert(0u32) += 1;
    }
    // The generator reaches the interesting outcomes, not just one kind.
    for kind in ["exited", "OutOfBounds", "FuelExhausted", "BadJumpTarget", "InvalidInstruction", "DivisionByZero"] {
        assert!(outcomes.get(kind).copied().unwrap_or(0) > 0, "no {kind} in {outcomes:?}");
    }
}
