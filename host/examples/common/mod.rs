//! What the benchmark examples share: arguments and statistics.

/// The next argument as a number, or `default` when it is absent.
pub fn number_arg(args: &mut impl Iterator<Item = String>, default: usize) -> anyhow::Result<usize> {
    Ok(args.next().map(|a| a.parse()).transpose()?.unwrap_or(default))
}

/// The median of `values`.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The `percent`th percentile of `sorted` (ascending, not empty).
pub fn percentile(sorted: &[f64], percent: usize) -> f64 {
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)]
}
