//! How far along the sink is: a progress bar on a terminal, a log line
//! otherwise.
//!
//! "Done" counts messages read and finished (written, dead-lettered or
//! skipped); the backlog is done plus the consumer lag of every assigned
//! partition, so the bar's end moves while new messages keep arriving.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::log_json;
use crate::metrics::{Metrics, Snapshot};

/// Whether log records are written as JSON: set before the configuration
/// is read (from `LOG_FORMAT`) and again once it is (`log.format`).
static JSON: AtomicBool = AtomicBool::new(false);

/// Sends log records around the progress bar, so neither garbles the other,
/// as human text or as JSON lines.
struct BarLogger {
    text: env_logger::Logger,
    json: env_logger::Logger,
    bars: MultiProgress,
}

impl BarLogger {
    fn current(&self) -> &env_logger::Logger {
        if JSON.load(Ordering::Relaxed) {
            &self.json
        } else {
            &self.text
        }
    }
}

impl log::Log for BarLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.text.enabled(metadata)
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.text.matches(record) {
            let logger = self.current();
            self.bars.suspend(|| logger.log(record));
        }
    }
    fn flush(&self) {}
}

fn builder() -> env_logger::Builder {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
}

/// Installs env_logger (`RUST_LOG`, `info` by default) behind a progress-bar
/// aware logger, writing JSON lines if `json`; bars added to the returned
/// `MultiProgress` never collide with log lines.
pub fn init_logging(json: bool) -> MultiProgress {
    set_json_logs(json);
    let bars = MultiProgress::new();
    let text = builder().build();
    let json = builder()
        .format(|buf, record| {
            let mut line = String::new();
            log_json::write_record(&mut line, &buf.timestamp_millis(), record);
            buf.write_all(line.as_bytes())
        })
        .build();
    let level = text.filter();
    if log::set_boxed_logger(Box::new(BarLogger {
        text,
        json,
        bars: bars.clone(),
    }))
    .is_ok()
    {
        log::set_max_level(level);
    }
    bars
}

/// Switches the log between human text and JSON lines.
pub fn set_json_logs(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// A bar for `run`, when stderr is a terminal.
pub fn bar_if_terminal(bars: &MultiProgress) -> Option<ProgressBar> {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal().then(|| bars.add(bar()))
}

/// Reports progress every tick: the bar at once, the log line every
/// `interval`.
pub struct Reporter {
    interval: Option<Duration>,
    bar: Option<ProgressBar>,
    last_log: Instant,
    last: Snapshot,
    last_done: u64,
    /// Messages per second over the last second (bar only).
    rate: f64,
}

/// A progress bar styled for the sink.
pub fn bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} msgs, ETA {eta}, {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

impl Reporter {
    pub fn new(interval: Duration, bar: Option<ProgressBar>) -> Reporter {
        Reporter {
            interval: (!interval.is_zero()).then_some(interval),
            bar,
            last_log: Instant::now(),
            last: Snapshot::default(),
            last_done: 0,
            rate: 0.0,
        }
    }

    /// `lag` is called only when a report is due: it may ask the consumer
    /// for watermarks.
    pub fn tick(
        &mut self,
        metrics: &Metrics,
        in_flight: usize,
        lag: impl FnOnce() -> Vec<(crate::types::Part, i64)>,
    ) {
        let log_due = self.interval.is_some_and(|i| self.last_log.elapsed() >= i);
        if self.bar.is_none() && !log_due {
            return;
        }
        let now = metrics.snapshot();
        let done = now.consumed.saturating_sub(in_flight as u64);
        let lag = lag();
        let remaining: i64 = lag.iter().map(|(_, l)| (*l).max(0)).sum();
        if let Some(bar) = &self.bar {
            let secs = self.last_log.elapsed().as_secs_f64();
            if secs >= 1.0 {
                self.rate = (done - self.last_done.min(done)) as f64 / secs;
                self.last_done = done;
                self.last_log = Instant::now();
            }
            bar.set_length(done + remaining as u64);
            bar.set_position(done);
            bar.set_message(format!(
                "{:.0} msgs/s, rows {} skipped {} dead {}",
                self.rate, now.rows_written, now.skipped, now.dead_lettered
            ));
        }
        if log_due {
            let secs = self.last_log.elapsed().as_secs_f64().max(1e-9);
            let rate = (done - self.last_done.min(done)) as f64 / secs;
            let rows_rate = (now.rows_written - self.last.rows_written) as f64 / secs;
            let eta = if rate > 0.0 {
                format!("{:.0}s", remaining as f64 / rate)
            } else if remaining == 0 {
                "0s".into()
            } else {
                "unknown".into()
            };
            let lags: Vec<String> = lag.iter().map(|(p, l)| format!("{p}:{l}")).collect();
            log::info!(
                "progress: done={done} backlog={} rows_written={} rows/s={rows_rate:.0} msgs/s={rate:.0} \
                 eta={eta} batches={} skipped={} dead_lettered={} retries={} in_flight={in_flight} lag=[{}]",
                done + remaining as u64,
                now.rows_written,
                now.batches,
                now.skipped,
                now.dead_lettered,
                now.retries,
                lags.join(" "),
            );
            self.last = now;
            self.last_done = done;
            self.last_log = Instant::now();
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}
