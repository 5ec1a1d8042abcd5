//! Command line: parse, set up logging and signals, run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use kafka_mysql_sink::config::Config;
use kafka_mysql_sink::metrics::Metrics;
use kafka_mysql_sink::pipeline::{self, RunOptions};
use kafka_mysql_sink::shutdown::Shutdown;

#[derive(Parser)]
#[command(
    name = "kafka-mysql-sink",
    version,
    about = "Drains JSON order events from Kafka into MySQL with batched, idempotent upserts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume the topic and write rows until SIGINT/SIGTERM.
    Run {
        /// TOML settings file; environment variables override it. Without it,
        /// built-in defaults plus the environment are used.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Exit 0 once the backlog present at start is written and committed.
        #[arg(long)]
        until_caught_up: bool,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            until_caught_up,
        } => run(config, until_caught_up),
    }
}

fn run(config: Option<PathBuf>, until_caught_up: bool) -> ExitCode {
    let config = match Config::load_from_process_env(config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kafka-mysql-sink: {e}");
            return ExitCode::from(2);
        }
    };
    log::info!("starting with {}", config.summary());
    let shutdown = Shutdown::new();
    if let Err(e) = shutdown.install_signal_handlers() {
        eprintln!("kafka-mysql-sink: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let metrics = Arc::new(Metrics::default());
    match pipeline::run(&config, RunOptions { until_caught_up }, &shutdown, metrics) {
        Ok(summary) => {
            let c = summary.counters;
            log::info!(
                "stopped: rows_written={} skipped={} consumed={} batches={} seconds={:.1} rows/s={:.0}",
                c.rows_written,
                c.skipped,
                c.consumed,
                c.batches,
                summary.elapsed.as_secs_f64(),
                summary.rows_per_sec()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            eprintln!("kafka-mysql-sink: {e}");
            ExitCode::FAILURE
        }
    }
}
