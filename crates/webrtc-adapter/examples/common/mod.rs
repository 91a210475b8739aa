//! What the open-time examples share: the error type, the environment knobs, the tracing
//! set-up and the summary line of the measured open times.

use std::time::Duration;

/// Any error an example returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A whole number from the environment variable `key`, if it is set and parses.
pub fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

/// Milliseconds, with fractions.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Logs to standard error, filtered by `RUST_LOG`.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
}

/// Sorts the open times (at least one) and summarises them: median, p99, min and max.
pub fn summary(opens: &mut [Duration]) -> String {
    opens.sort();
    let median = opens[opens.len() / 2];
    let p99 = opens[(opens.len() * 99 / 100).min(opens.len() - 1)];
    format!(
        "median {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
        ms(median),
        ms(p99),
        ms(opens[0]),
        ms(opens[opens.len() - 1])
    )
}
