//! The chaos suite (issue 10): botwatch under faults, each case ending in an exact
//! comparison — what was acknowledged against what the service shows, or a recount.
//!
//! The short form runs with every `cargo test` (and so in CI); the long form, with
//! more runs and more events, runs on demand: `CHAOS=long cargo test -p botwatch-tests
//! --test chaos -- --nocapture`. Each case prints one row of the results table
//! (BENCHMARKS.md → Chaos): case, runs, events, lost, doubled, recovery time.

/// Whether the long form was asked for.
pub fn long() -> bool {
    std::env::var("CHAOS").is_ok_and(|v| v == "long")
}

/// Prints one row of the results table.
pub fn report(case: &str, runs: usize, events: u64, lost: u64, doubled: u64, recovery: &str) {
    println!("| {case} | {runs} | {events} | {lost} | {doubled} | {recovery} |");
}
#[path = "chaos/live.rs"]
mod live;

#[path = "chaos/redis_faults.rs"]
mod redis_faults;
