//! Wiring one run of the sink: MySQL ready, writers started, consumer run,
//! writers joined.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::collation::KeyCollation;
use crate::config::{Config, Delivery};
use crate::db::{self, DbError};
use crate::fence::FenceSpec;
use crate::http::{self, Readiness};
use crate::metrics::{Metrics, Snapshot};
use crate::route::{Router, Routing};
use crate::shutdown::Shutdown;
use crate::source::{Source, SourceError, TopicWatch};
use crate::sql::{PlanStatements, UpsertBuilder};
use crate::targets::{DeadLetters, RouteTargets};
use crate::write::{DlqTarget, TopicDlq};
use crate::write::{MysqlSink, TargetSink, Writer, WriterSettings};

mod targets;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot start writer thread: {0}")]
    Spawn(std::io::Error),
    #[error("{0}")]
    Dlq(String),
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(
        "{route}: table {table} (for topic {topic}) does not exist; routes never create \
         tables: create it with the columns the route writes, then start again"
    )]
    RouteTableMissing {
        route: String,
        topic: String,
        table: String,
    },
    /// A route's plan does not fit its table (names route and column).
    #[error("{0}")]
    Plan(String),
}

/// How a run should go.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Exit once the backlog present at assignment is written and committed.
    pub until_caught_up: bool,
    /// A progress bar to drive (when stderr is a terminal).
    pub progress: Option<indicatif::ProgressBar>,
}

impl RunOptions {
    /// Run until the backlog present at assignment is done.
    pub fn until_caught_up() -> RunOptions {
        RunOptions {
            until_caught_up: true,
            progress: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub counters: Snapshot,
    /// The whole run, start-up included.
    pub elapsed: Duration,
    /// From the first message read to the end of the drain.
    pub active: Duration,
}

impl Summary {
    /// Rows written per second of active time.
    pub fn rows_per_sec(&self) -> f64 {
        self.counters.rows_written as f64 / self.active.as_secs_f64().max(1e-9)
    }
}

/// Runs the sink until `shutdown` is requested (or the backlog is done, with
/// `until_caught_up`), then drains and commits. A new topic a route's
/// pattern takes ends a round the same way, and the next round reads it
/// too (see `source::TopicWatch`).
pub fn run(
    config: &Config,
    options: RunOptions,
    shutdown: &Shutdown,
    metrics: Arc<Metrics>,
) -> Result<Summary, SinkError> {
    let started = Instant::now();
    let mut active = Duration::ZERO;
    // The plans of the round before, when it ended to replan: a replan
    // that compiles the same plans cannot get past what ended it (a trigger
    // naming a dropped column, say), so its errors are then handled as
    // unknown ones (retried, then isolated), not as a reason for another.
    let mut replanned: Option<Vec<crate::plan::Plan>> = None;
    // Served for the whole run, not a round: `/healthz` answers between
    // rounds too (`/readyz` says "starting" then).
    let running = Arc::new(AtomicBool::new(false));
    let pool_slot: http::PoolSlot = Arc::default();
    let _endpoint = if config.metrics.listen.is_empty() {
        None
    } else {
        Some(http::start(
            &config.metrics.listen,
            metrics.clone(),
            Readiness::new(running.clone(), pool_slot.clone(), db::opts(&config.mysql)),
        )?)
    };
    loop {
        let round = shutdown.round();
        let serving = (running.as_ref(), &pool_slot);
        let (took, new_topics) =
            run_round(config, &options, &round, &metrics, &mut replanned, serving)?;
        active += took;
        let replan = round.replan_requested();
        if replan {
            Metrics::add(&metrics.plan_rebuilds, 1);
        } else {
            replanned = None;
        }
        let again = new_topics || replan;
        if !again || shutdown.is_requested() {
            return Ok(Summary {
                counters: metrics.snapshot(),
                elapsed: started.elapsed(),
                active,
            });
        }
    }
}

/// One round of [`run`]: how long rows were moving, and whether it stopped
/// for new topics.
fn run_round(
    config: &Config,
    options: &RunOptions,
    shutdown: &Shutdown,
    metrics: &Arc<Metrics>,
    replanned: &mut Option<Vec<crate::plan::Plan>>,
    serving: (&AtomicBool, &http::PoolSlot),
) -> Result<(Duration, bool), SinkError> {
    let m = &config.mysql;
    let mut conn = db::connect_with_retry(m)?;
    let info = db::server_info(&mut conn)?;
    log::info!(
        "MySQL {} (upsert dialect {:?}, max_allowed_packet {} bytes)",
        info.version,
        info.dialect,
        info.max_allowed_packet
    );
    let built = if config.routes.is_empty() {
        targets::Built::default()
    } else {
        let cluster = cluster_topics(config)?;
        targets::route_targets(config, &mut conn, &info, &cluster)?
    };
    // (The default route has no plan to compare: a replan gives it its
    // table made again if it went, and once is all it can do.)
    let plans: Vec<crate::plan::Plan> = built.targets.iter().map(|t| t.plan.clone()).collect();
    if replanned.as_ref() == Some(&plans) {
        log::warn!(
            "the tables are as they were before the last replan; their errors are now retried \
             and isolated as unknown ones"
        );
        shutdown.exhaust_replans();
    }
    *replanned = Some(plans);
    let watch = TopicWatch::new(
        config,
        built
            .targets
            .iter()
            .map(|t| t.topic.clone())
            .chain(built.refused.iter().cloned()),
    );
    let (routes, zone) = (RouteTargets(built.targets), built.zone);
    // With routes, the sessions run in the zone their TIMESTAMP literals
    // are written in; and `kafka.topic` names the routes' topic where
    // they read one (dead letters in topic mode default after it).
    let routed;
    let config = if routes.is_empty() {
        config
    } else {
        let mut c = config.with_route_topic();
        c.mysql.init_sql.extend(zone);
        routed = c;
        &routed
    };
    let m = &config.mysql;
    let (table, collation) = match routes.get(0) {
        Some(t) => (t.table.clone(), KeyCollation::binary()),
        None => {
            db::ensure_table(&mut conn, &m.database, &m.table)?;
            let c = KeyCollation::read(&mut conn, db::opts(m).into(), &m.database, &m.table)?;
            log::info!("ids compare by the id column's collation, {c}");
            (m.table.clone(), c)
        }
    };
    let marks = db::ensure_offsets_table(&mut conn, &m.database, &config.offsets_table())?;
    let dlq = match (config.dlq_table(), config.dlq_topic()) {
        _ if !routes.is_empty() => DlqTarget::Skip,
        (Some(t), _) => {
            db::ensure_dlq_table(&mut conn, &m.database, &t)?;
            DlqTarget::Table(crate::sql::qualified(&m.database, &t))
        }
        (_, Some(topic)) => DlqTarget::Topic(Arc::new(
            TopicDlq::new(config, &topic).map_err(SinkError::Dlq)?,
        )),
        _ => DlqTarget::Skip,
    };
    let target_dlqs = dead_letter_targets(config, &routes)?;
    drop(conn);
    let pool = db::pool(m);

    // Every route target's topic, each once; the default route's without.
    let mut topics: Vec<String> = Vec::new();
    for t in routes.iter() {
        if !topics.contains(&t.topic) {
            topics.push(t.topic.clone());
        }
    }
    if routes.is_empty() {
        topics.push(config.kafka.topic.clone());
    }
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
    let mut source = Source::new(
        config,
        metrics.clone(),
        ack_rx,
        options.until_caught_up,
        options.progress.clone(),
        marks,
        &topics,
    )?
    .with_routes(routes.clone())
    .with_topic_watch(watch);

    let (router, writers) = spawn(
        config,
        &WriterTarget {
            pool: &pool,
            info: &info,
            table: &table,
            dlq: &dlq,
            fenced: true,
            collation: &collation,
        },
        (&routes, &target_dlqs),
        ack_tx,
        shutdown,
        metrics,
    )?;

    let (running, pool_slot) = serving;
    *pool_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(pool.clone());
    running.store(true, Ordering::SeqCst);
    let result = source.run(router, shutdown);
    running.store(false, Ordering::SeqCst);
    *pool_slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
    // The drain is over (or out of time): writers still stuck now are left
    // behind, and the process does not wait for them.
    writers.join_until(Instant::now() + WRITER_EXIT_GRACE);
    // Leave the group before reporting, so a restart gets a clean assignment.
    let again = source.stopped_for_new_topics();
    drop(source);
    Ok((result?, again))
}

/// The cluster's topics, for the routes' patterns.
fn cluster_topics(config: &Config) -> Result<Vec<String>, SinkError> {
    if config.routes.iter().all(|r| r.topic_pattern.is_none()) {
        return Ok(Vec::new());
    }
    let consumer: rdkafka::consumer::BaseConsumer = crate::source::client_config(&config.kafka)
        .create()
        .map_err(SourceError::Create)?;
    let metadata =
        rdkafka::consumer::Consumer::fetch_metadata(&consumer, None, Duration::from_secs(10))
            .map_err(|source| SourceError::Subscribe {
                topic: "the topics the routes' patterns match".into(),
                source,
            })?;
    Ok(metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect())
}

/// Where the writers write.
pub struct WriterTarget<'a> {
    pub pool: &'a db::Pool,
    pub info: &'a db::ServerInfo,
    /// The table, in `config.mysql.database`.
    pub table: &'a str,
    pub dlq: &'a DlqTarget,
    /// Whether writes check partition ownership; only writers fed by
    /// something other than the consumer (benchmarks) go without.
    pub fenced: bool,
    /// How the key column compares, which routing by key follows.
    pub collation: &'a KeyCollation,
}

/// Running writer threads.
pub struct Writers(Vec<thread::JoinHandle<()>>);

/// How long writers get to exit once the consumer's drain is over.
const WRITER_EXIT_GRACE: Duration = Duration::from_secs(1);

impl Writers {
    /// Waits for every writer to finish (drop their router first, or this
    /// waits forever).
    pub fn join(self) {
        for h in self.0 {
            if h.join().is_err() {
                log::error!("a writer thread panicked");
            }
        }
    }

    /// Waits for the writers until `deadline`; those still running then are
    /// left to end with the process.
    fn join_until(self, deadline: Instant) {
        let mut left = Vec::new();
        for h in self.0 {
            while !h.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                if h.join().is_err() {
                    log::error!("a writer thread panicked");
                }
            } else {
                left.push(h);
            }
        }
        if !left.is_empty() {
            log::warn!(
                "{} writer(s) still waiting on MySQL after the drain; left behind, their rows uncommitted",
                left.len()
            );
        }
    }
}

/// Starts `sink.writers` writer threads, each with its bounded channel, that
/// acknowledge on `acks`; returns the router that feeds them. Only the writers keep `acks`: the channel closes
/// when the last writer exits, which is how the consumer knows a drain is over.
pub fn spawn_writers(
    config: &Config,
    target: &WriterTarget<'_>,
    acks: crossbeam_channel::Sender<crate::types::Ack>,
    shutdown: &Shutdown,
    metrics: &Arc<Metrics>,
) -> Result<(Router, Writers), SinkError> {
    let none = RouteTargets::default();
    spawn(config, target, (&none, &[]), acks, shutdown, metrics)
}

/// Each route target's dead-letter destination, by target; the tables were
/// created with the targets.
fn dead_letter_targets(
    config: &Config,
    routes: &RouteTargets,
) -> Result<Vec<DlqTarget>, SinkError> {
    let mut topics: Vec<(String, DlqTarget)> = Vec::new();
    let mut out = Vec::new();
    for t in routes.iter() {
        out.push(match &t.dead_letters {
            DeadLetters::Skip => DlqTarget::Skip,
            DeadLetters::Table(name) => {
                DlqTarget::Table(crate::sql::qualified(&config.mysql.database, name))
            }
            DeadLetters::Topic(name) => match topics.iter().find(|(n, _)| n == name) {
                Some((_, d)) => d.clone(),
                None => {
                    let d = DlqTarget::Topic(Arc::new(
                        TopicDlq::new(config, name).map_err(SinkError::Dlq)?,
                    ));
                    topics.push((name.clone(), d.clone()));
                    d
                }
            },
        });
    }
    Ok(out)
}

/// [`spawn_writers`], with the route targets the writers also write (and
/// each one's dead-letter destination).
fn spawn(
    config: &Config,
    target: &WriterTarget<'_>,
    (routes, dlqs): (&RouteTargets, &[DlqTarget]),
    acks: crossbeam_channel::Sender<crate::types::Ack>,
    shutdown: &Shutdown,
    metrics: &Arc<Metrics>,
) -> Result<(Router, Writers), SinkError> {
    let (s, m) = (&config.sink, &config.mysql);
    let settings = WriterSettings {
        table: target.table.to_owned(),
        batch_size: s.batch_size,
        flush_interval: s.flush_interval,
        retry_initial: s.retry_initial,
        retry_max: s.retry_max,
        shutdown_timeout: s.shutdown_timeout,
    };
    // Exactly-once transactions each cover a run of one partition's
    // offsets, so a partition has one writer; otherwise rows spread by key.
    let routing = match s.delivery {
        Delivery::ExactlyOnce => Routing::ByPartition,
        Delivery::AtLeastOnce => Routing::ByKey,
    };
    let (mut router, inboxes) = Router::new(
        s.writers,
        s.channel_capacity,
        routing,
        target.collation.clone(),
    );
    router.route_targets(routes);
    metrics.writers.set(s.writers as i64);
    let mut handles = Vec::with_capacity(s.writers);
    for (id, rx) in inboxes.into_iter().enumerate() {
        let mut sink = MysqlSink::new(
            target.pool.clone(),
            UpsertBuilder::new(&m.database, target.table, target.info.dialect),
            crate::sql::qualified(&m.database, target.table),
            target.info.statement_budget(),
            target.dlq.clone(),
        )
        .with_side_connection(mysql::Opts::from(db::opts(m)))
        .with_targets(
            routes
                .iter()
                .zip(dlqs)
                .map(|(t, d)| {
                    let statements = PlanStatements::new(&t.shape, target.info.dialect);
                    TargetSink::new(statements, d.clone(), t.table.clone())
                })
                .collect(),
        );
        if target.fenced {
            sink = sink.fenced(FenceSpec::new(config));
        }
        let writer = Writer::new(
            id,
            rx,
            acks.clone(),
            sink,
            settings.clone(),
            shutdown.clone(),
            metrics.clone(),
        );
        let handle = thread::Builder::new()
            .name(format!("writer-{id}"))
            .spawn(move || writer.run())
            .map_err(SinkError::Spawn)?;
        handles.push(handle);
    }
    Ok((router, Writers(handles)))
}
