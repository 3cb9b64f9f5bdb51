//! The `koupleless` binary: see the `koupleless_cli` library.

fn main() -> std::process::ExitCode {
    koupleless_cli::run_cli(std::env::args_os())
}
