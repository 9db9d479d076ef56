//! What a plugin's storage writes cost once they reach sled: WRITES
//! `storage::set`s through the store (as the host functions make them), in
//! rounds of ROUND writes each settled into sled before the next, on top of
//! PRELOAD entries already stored.
//!
//! ```sh
//! cargo run --release -p rapidwasm --example plugin_data_bench -- [--random] [WRITES] [ROUND] [PRELOAD] [RUNS]
//! ```
//!
//! Keys are time-ordered as the message log's are, or with `--random`
//! random (as a plugin keying its data by phone number would write).
//! Values are 150 bytes. Prints the median over RUNS of the microseconds
//! of wall time per write, from the first write to the last settled.

use std::time::Instant;

mod common;

use common::{median, number_arg, take_flag};
use rapidwasm::store::{SledStore, Store};

fn main() -> anyhow::Result<()> {
    rapidwasm::process::tune_memory()?;
    let mut all: Vec<String> = std::env::args().skip(1).collect();
    let random = take_flag(&mut all, "--random");
    let mut args = all.into_iter();
    let writes = number_arg(&mut args, 100_000)?;
    let round = number_arg(&mut args, 1000)?.max(1);
    let preload = number_arg(&mut args, 100_000)?;
    let runs = number_arg(&mut args, 3)?;
    let value = vec![b'v'; 150];
    let mut rng = fastrand::Rng::with_seed(1);
    let mut next = 0u64;
    let mut key = |rng: &mut fastrand::Rng| {
        next += 1;
        if random { format!("by-phone/+{:012}", rng.u64(..1_000_000_000_000)) } else { format!("log/{next:024}") }
    };
    let mut figures = Vec::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let store = SledStore::open(dir.path())?;
        for _ in 0..preload {
            store.plugin_set("bench", &key(&mut rng), &value)?;
        }
        store.settle()?;
        let start = Instant::now();
        for written in 1..=writes {
            store.plugin_set("bench", &key(&mut rng), &value)?;
            if written % round == 0 {
                store.settle()?;
            }
        }
        store.settle()?;
        figures.push(start.elapsed().as_secs_f64() * 1e6 / writes as f64);
    }
    let order = if random { "random" } else { "time-ordered" };
    println!(
        "{writes} {order} writes in rounds of {round} over {preload} entries: median {:.2} µs per write",
        median(figures)
    );
    Ok(())
}
