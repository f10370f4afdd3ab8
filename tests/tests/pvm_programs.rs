//! Golden tests: every program in `pvm/programs/` runs through the `pvm`
//! command line and must print exactly what its file says, with its status
//! and trap. Plus assembler round trips and the file formats.

use pvm::programs::{self, PROGRAMS};
use tests::{pvm, temp_path as temp};

#[test]
fn every_program_prints_its_expected_output_status_and_trap_on_both_engines() {
    for engine in ["interp", "jit"] {
        for p in PROGRAMS {
            let e = p.expectation();
            let mut args = vec!["run", p.name, "--engine", engine];
            args.extend(e.args.iter().map(String::as_str));
            let o = pvm(&args);
            assert_eq!(o.stdout, e.stdout, "{} on {engine}: stderr {}", p.name, o.stderr);
            assert_eq!(o.status, e.status, "{} on {engine}: stderr {}", p.name, o.stderr);
            match &e.trap {
                Some(t) => assert!(
                    o.stderr.contains(t.as_str()),
                    "{} on {engine}: want trap {t:?}, stderr {}",
                    p.name,
                    o.stderr
                ),
                None => assert!(o.stderr.is_empty(), "{} on {engine}: unexpected stderr {}", p.name, o.stderr),
            }
        }
    }
}

#[test]
fn dump_block_shows_the_guest_block_next_to_its_x86_64() {
    let o = pvm(&["run", "loop", "--engine", "jit", "--dump-block", "0x1028"]);
    assert_eq!(o.status, 0);
    assert!(o.stderr.contains("guest block 0x1028.."), "{}", o.stderr);
    assert!(o.stderr.contains("mul r4, r2, r2"), "{}", o.stderr);
    assert!(o.stderr.contains("x86-64 at 0x"), "{}", o.stderr);
    assert!(o.stderr.contains("imul "), "{}", o.stderr);
    let o = pvm(&["run", "loop", "--engine", "interp", "--trace", "--engine", "jit"]);
    assert_eq!(o.status, 2, "{}", o.stderr);
}

#[test]
fn jit_stats_report_the_translator_at_work() {
    // (threshold 1: every block translated at its first entry)
    let o = pvm(&["run", "selfmod", "--engine", "jit", "--stats", "--cache-size", "2K", "--jit-threshold", "1"]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    let field = |name: &str| -> u64 {
        let line =
            o.stderr.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {}", o.stderr));
        line[name.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(field("blocks translated:") > 3);
    assert!(field("invalidations:") >= 10);
    assert!(field("cache flushes:") >= 1);
    assert!(field("chained links:") >= 1);
    assert!(o.stderr.contains("ns per guest instruction"), "{}", o.stderr);
    let per_block = o.stderr.lines().find(|l| l.starts_with("translation per block:")).expect("per-block line");
    assert!(per_block.contains("median") && per_block.contains("slowest") && per_block.contains("(block at 0x"));
    assert!(o.stderr.contains("jit threshold:        1 (before it: 0 blocks, 0 instrs interpreted)"), "{}", o.stderr);
}

#[test]
fn jit_stats_report_the_blocks_run_interpreted_before_they_got_hot() {
    // expect: at the default threshold (50) the first blocks of `collatz`
    // run on the interpreter, its loops get hot and are translated
    let o = pvm(&["run", "collatz", "--engine", "jit", "--stats"]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    let line = o.stderr.lines().find(|l| l.starts_with("jit threshold:")).expect("a threshold line");
    let words: Vec<&str> = line.split_whitespace().collect();
    // jit threshold: 50 (before it: N blocks, M instrs interpreted)
    assert_eq!(words[2], pvm::jit::DEFAULT_THRESHOLD.to_string(), "{line}");
    let blocks: u64 = words[5].parse().expect("blocks");
    let instrs: u64 = words[7].parse().expect("instrs");
    assert!(blocks > 0 && instrs >= blocks, "{line}");
    let translated = o.stderr.lines().find_map(|l| l.strip_prefix("blocks translated:")).expect("blocks translated");
    assert!(translated.trim().parse::<u64>().expect("a count") > 0, "{}", o.stderr);
}

#[test]
fn bench_compares_the_engines_and_writes_json_and_svg() {
    let json = temp("bench.json");
    let svg = temp("bench.svg");
    let o = pvm(&[
        "bench",
        "--programs",
        "collatz",
        "--rounds",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    let row = o.stdout.lines().find(|l| l.starts_with("| collatz |")).expect(&o.stdout);
    assert!(row.contains("| 192277640 |"), "{row}");
    assert!(o.stdout.contains("geometric mean speedup of jit over interp"), "{}", o.stdout);
    let throughput = o.stdout.lines().find(|l| l.starts_with("translation throughput: ")).expect(&o.stdout);
    assert!(throughput.contains("ns each on the second"), "{throughput}");
    let j = std::fs::read_to_string(&json).unwrap();
    assert!(j.contains("\"program\": \"collatz\"") && j.contains("\"speedup\": "), "{j}");
    assert!(j.contains("\"median_block_translate_seconds\": ") && j.contains("\"slowest_block_pc\": "), "{j}");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<title>collatz jit: "));
}

#[test]
fn run_without_arguments_runs_the_demo() {
    let o = pvm(&["run"]);
    assert_eq!(o.status, 0);
    assert_eq!(o.stdout, programs::find("demo").unwrap().expectation().stdout);
}

#[test]
fn brainfuck_runs_the_same_without_the_front_end_optimisations() {
    for name in ["hello_bf", "loops_bf"] {
        let e = programs::find(name).unwrap().expectation();
        let o = pvm(&["run", name, "--no-bf-opt"]);
        assert_eq!((o.status, o.stdout), (0, e.stdout));
    }
}

#[test]
fn brainfuck_input_at_end_leaves_the_cell_unchanged() {
    // ',' with no input keeps the 'A' (65) in the cell; '.' prints it.
    let path = temp("comma.b");
    std::fs::write(&path, "++++++++[>++++++++<-]>+,.").unwrap();
    let o = pvm(&["run", path.to_str().unwrap()]);
    assert_eq!((o.status, o.stdout.as_str()), (0, "A"), "{}", o.stderr);
}

#[test]
fn asm_disasm_asm_round_trips_every_program() {
    for p in PROGRAMS.iter().filter(|p| p.kind == "pasm") {
        let src = temp(&format!("{}.pasm", p.name));
        std::fs::write(&src, p.source).unwrap();
        let pbc = temp(&format!("{}.pbc", p.name));
        let o = pvm(&["asm", src.to_str().unwrap(), "-o", pbc.to_str().unwrap()]);
        assert_eq!(o.status, 0, "{}: {}", p.name, o.stderr);
        let image = std::fs::read(&pbc).unwrap();
        let listing = pvm(&["disasm", pbc.to_str().unwrap()]);
        assert_eq!(listing.status, 0);
        let again = temp(&format!("{}.again.pasm", p.name));
        std::fs::write(&again, &listing.stdout).unwrap();
        let pbc2 = temp(&format!("{}.again.pbc", p.name));
        let o = pvm(&["asm", again.to_str().unwrap(), "-o", pbc2.to_str().unwrap()]);
        assert_eq!(o.status, 0, "{}: {}", p.name, o.stderr);
        assert_eq!(std::fs::read(&pbc2).unwrap(), image, "{} does not round-trip", p.name);
    }
}

#[test]
fn pbc_images_run_like_their_source() {
    let src = temp("fibimg.pasm");
    std::fs::write(&src, programs::find("recursion").unwrap().source).unwrap();
    let pbc = temp("fibimg.pbc");
    assert_eq!(pvm(&["asm", src.to_str().unwrap(), "-o", pbc.to_str().unwrap()]).status, 0);
    let o = pvm(&["run", pbc.to_str().unwrap()]);
    assert_eq!(o.stdout, programs::find("recursion").unwrap().expectation().stdout);
}

#[test]
fn load_errors_have_their_own_statuses_and_positions() {
    let bad = temp("bad.pasm");
    std::fs::write(&bad, "main: li r1, 1\n  add r1, r2\n").unwrap();
    let o = pvm(&["run", bad.to_str().unwrap()]);
    assert_eq!(o.status, 65);
    assert!(o.stderr.contains("bad.pasm:2:13: expected a comma between operands"), "{}", o.stderr);

    assert_eq!(o.stderr.matches("expected a comma").count(), 1, "{}", o.stderr);

    let o = pvm(&["run", "fib", "--engine", "jit", "--cache-size", "64"]);
    assert_eq!(o.status, 70, "{}", o.stderr);
    assert!(o.stderr.contains("raise --cache-size"), "{}", o.stderr);

    let o = pvm(&["run", "/no/such/file.pasm"]);
    assert_eq!(o.status, 66);
    assert!(o.stderr.contains("cannot read /no/such/file.pasm"), "{}", o.stderr);

    let o = pvm(&["run", "nosuchprogram"]);
    assert_eq!(o.status, 66);
    assert!(o.stderr.contains("nor a built-in program"), "{}", o.stderr);

    let image = pvm::asm::assemble("x", "main: jmp main\n").unwrap();
    let mut bytes = image.to_bytes();
    let last = bytes.len() - 8;
    bytes[last] = 0xfe; // unknown opcode
    let pbc = temp("bad.pbc");
    std::fs::write(&pbc, &bytes).unwrap();
    let o = pvm(&["run", pbc.to_str().unwrap()]);
    assert_eq!(o.status, 65);
    assert!(o.stderr.contains("rejected by the verifier"), "{}", o.stderr);
    assert!(o.stderr.contains("at 0x1000: unknown opcode 0xfe"), "{}", o.stderr);

    let unbalanced = temp("bad.b");
    std::fs::write(&unbalanced, "+[[-]").unwrap();
    let o = pvm(&["run", unbalanced.to_str().unwrap()]);
    assert_eq!(o.status, 65);
    assert!(o.stderr.contains("unmatched '[' at byte 1"), "{}", o.stderr);
}

#[test]
fn stats_and_trace_report_what_ran() {
    let o = pvm(&["run", "recursion", "--stats"]);
    assert_eq!(o.status, 0);
    assert!(o.stderr.contains("retired instructions: "), "{}", o.stderr);
    assert!(o.stderr.contains("instructions/second:"), "{}", o.stderr);
    let call = o.stderr.lines().find(|l| l.trim_start().starts_with("call ")).expect("call in histogram");
    assert!(call.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() > 10);

    let o = pvm(&["run", "trap_div", "--trace"]);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines[0], "0x001000  li r1, 4160                  r1=0x1040");
    // One line per retired instruction: pc, the instruction padded to 28
    // columns, then every register it changed (r2 goes from 7 to 0 here).
    assert_eq!(lines[3], "0x001018  li r1, 7                     r1=0x7", "{}", o.stderr);
    assert_eq!(lines[4], "0x001020  li r2, 0                     r2=0x0", "{}", o.stderr);
}

#[test]
fn memory_size_is_checked_and_used() {
    let o = pvm(&["run", "fib", "--mem", "0"]);
    assert_eq!(o.status, 65);
    assert!(o.stderr.contains("memory of 0 MiB is out of range"), "{}", o.stderr);
    // matmul's three matrices take 3.84 MB: 1 MiB of memory cannot hold them
    let o = pvm(&["run", "matmul", "--mem", "1"]);
    assert_eq!(o.status, 65);
    assert!(o.stderr.contains("raise --mem"), "{}", o.stderr);
}
