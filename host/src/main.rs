//! The `rapidwasm` command: serve, one-shot receive/send, chat, check.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
