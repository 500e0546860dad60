//! `stackctl-engine`: runs one engine role (or all of them) in one process.
//! The logic lives in [`engine::entry`] so `stackctl engine` runs the same code.

fn main() -> std::process::ExitCode {
    engine::entry::main_with_args(std::env::args_os())
}
