//! `pvm`: assemble, verify and run bytecode programs.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let code = {
        let mut io = pvm::machine::StdIo::default();
        pvm::cli::main_with(&args, &mut io, &mut std::io::stdout(), &mut std::io::stderr())
    };
    std::process::exit(code);
}
