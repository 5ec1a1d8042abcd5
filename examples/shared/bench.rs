//! What the end-to-end benchmarks share: reading the sink's summary line,
//! medians, and finding the sink binary.

use std::path::{Path, PathBuf};

type BoxError = Box<dyn std::error::Error>;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The number after the last `key` in `text` (the sink's summary line).
pub fn field(text: &str, key: &str) -> Option<f64> {
    let start = text.rfind(key)? + key.len();
    text[start..].split_whitespace().next()?.parse().ok()
}

/// The sink binary next to this example (target/<profile>/kafka-mysql-sink).
pub fn sink_binary() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory")?;
    let bin = dir.join("kafka-mysql-sink");
    if !bin.exists() {
        return Err(format!(
            "{} is missing: run `cargo build --release` first",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}
