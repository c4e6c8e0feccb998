//! The `sluice` binary: parse the command line, run the command, turn the outcome into an
//! exit code. Everything else lives in the library.

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
