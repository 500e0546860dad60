//! `stackctl-engine`: runs one engine role (or all of them) in one process.

fn main() {
    eprintln!("stackctl-engine: not built yet");
    std::process::exit(1);
}
