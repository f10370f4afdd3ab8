//! Property tests: whatever the input, loading and running end in a clean
//! result or a clean error, never a panic.

use pvm::image::Image;
use pvm::interp::Outcome;
use pvm::machine::BufferIo;
use pvm::run::{self, LoadOptions};
use tests::Rng;

const CASES: u64 = 3000;

fn run_to_end(image: &Image) -> Outcome {
    let mut io = BufferIo { input: b"some input".to_vec(), ..Default::default() };
    run::run_image(image, &run::RunConfig { mem_mib: 1, fuel: Some(20_000), ..Default::default() }, None, None, &mut io)
        .expect("a verified image of 1 MiB loads")
        .outcome
}

#[test]
fn random_bytes_as_images_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut loaded = 0;
    for case in 0..CASES {
        let len = rng.below(200) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if case % 2 == 0 {
            // a plausible header so parsing gets further
            let mut head = b"PVMB\x01\x00".to_vec();
            head.push(rng.below(3) as u8);
            head.push(0);
            bytes.splice(0..0, head);
        }
        if let Ok(image) = run::build("random", "pasm", &bytes, LoadOptions::default()) {
            loaded += 1;
            run_to_end(&image);
        }
    }
    // Random bytes are rarely valid: most cases must end in a load error.
    assert!(loaded < CASES / 2, "{loaded} random images loaded");
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
            Outcome::Trapped(t) => format!("{:?}", t.kind).split(['(', ' ']).next().unwrap().to_string(),
        };
        *outcomes.entry(key).or_insert(0u32) += 1;
    }
    // The generator reaches the interesting outcomes, not just one kind.
    for kind in ["exited", "OutOfBounds", "FuelExhausted", "BadJumpTarget", "InvalidInstruction", "DivisionByZero"] {
        assert!(outcomes.get(kind).copied().unwrap_or(0) > 0, "no {kind} in {outcomes:?}");
    }
}
