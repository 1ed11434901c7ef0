//! Settings shared by the benchmarks (`BENCH_*` environment variables).

/// A whole number from the environment, or `default`; anything else stops the
/// benchmark with a message.
pub fn env_number(name: &str, default: u64, min: u64, max: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                eprintln!("bench: {name}={text:?} is not a whole number in {min}..={max}");
                std::process::exit(2);
            }
        },
    }
}

/// Whether to run the informational rows: `BENCH_DIAGNOSE=1` always, `=0`
/// never, otherwise only when a target was missed.
pub fn diagnose(targets_met: bool) -> bool {
    match std::env::var("BENCH_DIAGNOSE").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => !targets_met,
    }
}
