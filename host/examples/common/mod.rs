//! What the benchmark examples share: arguments, statistics, and the
//! allocator the `rapidwasm` binary uses.

/// The same allocator as the `rapidwasm` binary, so figures match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The next argument as a number, or `default` when it is absent.
pub fn number_arg(args: &mut impl Iterator<Item = String>, default: usize) -> anyhow::Result<usize> {
    Ok(args.next().map(|a| a.parse()).transpose()?.unwrap_or(default))
}

#[allow(dead_code)] // not every benchmark takes flags
/// Remove `name` from `args`; whether it was there.
pub fn take_flag(args: &mut Vec<String>, name: &str) -> bool {
    let before = args.len();
    args.retain(|a| a != name);
    args.len() != before
}

#[allow(dead_code)] // not every benchmark takes options
/// Remove `name VALUE` from `args` and return VALUE, if `name` was there.
pub fn take_option(args: &mut Vec<String>, name: &str) -> anyhow::Result<Option<String>> {
    let Some(at) = args.iter().position(|a| a == name) else {
        return Ok(None);
    };
    anyhow::ensure!(at + 1 < args.len(), "{name} needs a value");
    let value = args.remove(at + 1);
    args.remove(at);
    Ok(Some(value))
}

/// The median of `values`.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[allow(dead_code)] // not every benchmark reports percentiles
/// The `percent`th percentile of `sorted` (ascending, not empty).
pub fn percentile(sorted: &[f64], percent: usize) -> f64 {
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)]
}

#[allow(dead_code)] // not every benchmark times plugin storage
/// Wait until the store has applied every write it holds in memory
/// (plugin data is written behind), so that a timed window includes it.
pub async fn settle(store: &std::sync::Arc<dyn rapidwasm::store::Store>) -> anyhow::Result<()> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.settle()).await??;
    Ok(())
}
