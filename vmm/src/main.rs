//! `vmm`: boot a tiny guest on KVM and show what it traps.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let code = vmm::cli::main_with(
        &args,
        Some(Box::new(std::io::stdin())),
        Box::new(std::io::stdout()),
        &mut std::io::stderr(),
    );
    std::process::exit(code);
}
