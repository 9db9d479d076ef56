//! Process-wide settings a program embedding the host should make once, at
//! start: [`tune_memory`].

/// Keep the process on the kernel's small (4 KiB) pages.
///
/// mimalloc, the allocator of the `rapidwasm` binary and its benchmarks,
/// asks Linux for transparent huge pages on the memory it maps. The first
/// touch of such memory makes the kernel clear a whole 2 MiB page, and the
/// allocator's memory is touched a few small objects at a time: under the
/// durable router a sixth of the journal's checkpoint thread, and a tenth of
/// its other writers' time, went into clearing huge pages. With small pages
/// the kernel clears only what is used (A/B runs of `receive_bench
/// --durable`: a quarter less system time, a tenth more messages a second).
///
/// Call it first thing in `main`; it applies to the whole process: every
/// thread, and every page first touched after it, wherever it was mapped.
/// Processes it starts inherit it. Elsewhere than Linux it does nothing. It fails only if the kernel
/// refuses the setting, which costs speed, not correctness: callers may log
/// the error and go on.
pub fn tune_memory() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn tune_memory_turns_huge_pages_off_for_the_process() {
        super::tune_memory().expect("the kernel takes the setting");
        assert!(rustix::thread::transparent_huge_pages_are_disabled().expect("the kernel reports the setting"));
    }
}
