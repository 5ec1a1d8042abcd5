//! Command line: parse, set up logging and signals, run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use indicatif::MultiProgress;

use kafka_mysql_sink::config::{Config, LogFormat};
use kafka_mysql_sink::metrics::{Metrics, ProcessUsage};
use kafka_mysql_sink::pipeline::{self, RunOptions};
use kafka_mysql_sink::shutdown::Shutdown;
use kafka_mysql_sink::{check, offsets_command, progress};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit status for a configuration the sink cannot use.
const EXIT_CONFIG: u8 = 2;

/// Exit status of a backfill that finished after starting partitions
/// elsewhere than where the sink had left them (`kafka.on_out_of_range`):
/// done, but not everything was written.
const EXIT_RESET: u8 = 3;

#[derive(Parser)]
#[command(
    name = "kafka-mysql-sink",
    version,
    about = "Drains JSON order events from Kafka into MySQL with batched, idempotent upserts",
    after_help = "Exit codes: 0 clean stop, 1 failure (one line on stderr), 2 invalid configuration, \
                  3 --until-caught-up finished after offset resets (messages lost or skipped), \
                  130 second signal during the drain."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume the topic and write rows until SIGINT/SIGTERM (or, with
    /// --until-caught-up, until the backlog is done).
    Run {
        /// TOML settings file; environment variables override it. Without it,
        /// built-in defaults plus the environment are used.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Exit 0 once the backlog present at start is written and committed.
        #[arg(long)]
        until_caught_up: bool,
    },
    /// Validate the settings and reach Kafka and MySQL, one line per check;
    /// exit non-zero on the first failure. Changes nothing.
    Check {
        /// TOML settings file; environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// The group's offsets in Kafka and in MySQL, beside the log Kafka has.
    Offsets {
        #[command(subcommand)]
        command: OffsetsCommand,
    },
}

#[derive(Subcommand)]
enum OffsetsCommand {
    /// Per partition: log start and end, Kafka's committed offset, MySQL's
    /// next offset and generation, the durable lag, and whether Kafka still
    /// has the offset the sink would resume from.
    Show {
        /// TOML settings file; environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The topic, where `[[routes]]` read several.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Move the group's partitions to an offset in both stores (a replay, or
    /// going on after a recreated topic); refused while another member of
    /// the group (a running sink) holds them.
    Reset {
        /// TOML settings file; environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// `earliest`, `latest`, an offset, or `current` (keep where the sink
        /// would resume, and take the log Kafka has now for theirs: a group
        /// moved with translated offsets).
        #[arg(long)]
        to: offsets_command::Target,
        /// Only this partition (repeatable); every partition by default.
        #[arg(long)]
        partition: Vec<i32>,
        /// The topic, where `[[routes]]` read several.
        #[arg(long)]
        topic: Option<String>,
        /// Reset even partitions held by another member, or to an offset
        /// outside the log.
        #[arg(long)]
        force: bool,
    },
}

fn load(config: Option<PathBuf>) -> Result<Config, ExitCode> {
    let config = Config::load_from_process_env(config.as_deref()).map_err(|e| {
        eprintln!("kafka-mysql-sink: {e}");
        ExitCode::from(EXIT_CONFIG)
    })?;
    progress::set_json_logs(config.log.format == LogFormat::Json);
    Ok(config)
}

fn main() -> ExitCode {
    kafka_mysql_sink::malloc::keep_freed_memory();
    // Logging starts before the file is read, from the environment alone;
    // the file's `log.format` applies once it is loaded.
    let bars = progress::init_logging(LogFormat::from_process_env() == LogFormat::Json);
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            until_caught_up,
        } => match load(config) {
            Ok(c) => run(c, until_caught_up, bars),
            Err(code) => code,
        },
        Command::Check { config } => match load(config) {
            Ok(c) => match check::run(&c, &mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    println!("FAIL {e}");
                    eprintln!("kafka-mysql-sink: check failed: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(code) => code,
        },
        Command::Offsets { command } => offsets(command),
    }
}

fn offsets(command: OffsetsCommand) -> ExitCode {
    let mut out = std::io::stdout();
    let result = match command {
        OffsetsCommand::Show { config, topic } => match load(config) {
            Ok(c) => offsets_command::for_topic(&c, topic.as_deref())
                .and_then(|c| offsets_command::show(&c, &mut out)),
            Err(code) => return code,
        },
        OffsetsCommand::Reset {
            config,
            to,
            partition,
            topic,
            force,
        } => match load(config) {
            Ok(c) => offsets_command::for_topic(&c, topic.as_deref())
                .and_then(|c| offsets_command::reset(&c, to, &partition, force, &mut out)),
            Err(code) => return code,
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kafka-mysql-sink: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config, until_caught_up: bool, bars: MultiProgress) -> ExitCode {
    log::info!("starting with {}", config.summary());
    let shutdown = Shutdown::new();
    if let Err(e) = shutdown.install_signal_handlers() {
        eprintln!("kafka-mysql-sink: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let progress = progress::bar_if_terminal(&bars);
    let options = RunOptions {
        until_caught_up,
        progress,
    };
    let metrics = Arc::new(Metrics::default());
    match pipeline::run(&config, options, &shutdown, metrics) {
        Ok(summary) => {
            let c = summary.counters;
            let usage = ProcessUsage::read();
            log::info!(
                "stopped: rows_written={} skipped={} dead_lettered={} deleted={} consumed={} batches={} offset_resets={} offsets_lost={} writer_idle_seconds={:.1} seconds={:.1} active_seconds={:.3} rows/s={:.0} cpu_seconds={:.2} system_seconds={:.2} page_faults={} waits={} preemptions={} peak_rss_mib={:.1}",
                c.rows_written,
                c.skipped,
                c.dead_lettered,
                c.rows_deleted,
                c.consumed,
                c.batches,
                c.offset_resets,
                c.offsets_lost,
                c.writer_idle_ms as f64 / 1e3,
                summary.elapsed.as_secs_f64(),
                summary.active.as_secs_f64(),
                summary.rows_per_sec(),
                usage.cpu_seconds,
                usage.system_seconds,
                usage.page_faults,
                usage.waits,
                usage.preemptions,
                usage.peak_rss_mib,
            );
            if c.offset_resets > 0 {
                log::warn!(
                    "{} partition(s) were started elsewhere than where the sink had left them; \
                     {} message(s) will never be written (kafka.on_out_of_range)",
                    c.offset_resets,
                    c.offsets_lost
                );
                if until_caught_up {
                    return ExitCode::from(EXIT_RESET);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            eprintln!("kafka-mysql-sink: {e}");
            match e {
                // A route whose settings only the tables could judge (a
                // table name that fails the identifier check).
                pipeline::SinkError::Config(_) => ExitCode::from(EXIT_CONFIG),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
