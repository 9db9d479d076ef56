//! The `rapidwasm` command: serve, one-shot receive/send, chat, check.

mod cli;

/// mimalloc instead of the system allocator: routing allocates many small,
/// short-lived strings on several threads, where glibc's malloc spent a
/// sixth of the time and contended on its arena locks (see `bench/run`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
