//! The operations endpoint: `/metrics` (Prometheus text format), `/healthz`
//! (the process is alive) and `/readyz` (the consumer is running and MySQL
//! answers), for scrapers and container orchestrators.
//!
//! A single thread with a blocking server is enough: scrapes and probes are
//! rare and cheap, and nothing here is on the data path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tiny_http::{Header, Response, Server};

use crate::db::Pool;
use crate::metrics::Metrics;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for metrics: {reason} (check metrics.listen / METRICS_ADDR)")]
pub struct HttpError {
    pub addr: String,
    pub reason: String,
}

/// The running endpoint; stops when dropped.
pub(crate) struct Endpoint {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The pool of the round that runs, if one does.
pub(crate) type PoolSlot = Arc<std::sync::Mutex<Option<Pool>>>;

/// How often the `ready` gauge is brought up to date.
const READY_EVERY: Duration = Duration::from_secs(2);

/// What `/readyz` needs to know.
///
/// The probe pings MySQL over a connection of its own rather than one from
/// the writers' pool: writers keep their pooled connections between batches,
/// so with `pool_size` equal to the writer count the pool has none to spare,
/// and a probe should not take capacity from the writers anyway.
pub(crate) struct Readiness {
    /// Set once start-up is over and the consumer loop runs.
    running: Arc<AtomicBool>,
    /// The writers' pool of the running round, for the connections-in-use
    /// gauge (the endpoint outlives rounds; none between them).
    pool: PoolSlot,
    opts: mysql::Opts,
    conn: Option<mysql::Conn>,
}

impl Readiness {
    /// Another probe of the same sink, with a connection of its own.
    fn another(&self) -> Readiness {
        Readiness {
            running: self.running.clone(),
            pool: self.pool.clone(),
            opts: self.opts.clone(),
            conn: None,
        }
    }

    pub(crate) fn new(
        running: Arc<AtomicBool>,
        pool: PoolSlot,
        opts: mysql::OptsBuilder,
    ) -> Readiness {
        let probe_timeout = Some(Duration::from_secs(2));
        let opts = opts
            .tcp_connect_timeout(probe_timeout)
            .read_timeout(probe_timeout)
            .write_timeout(probe_timeout);
        Readiness {
            running,
            pool,
            opts: opts.into(),
            conn: None,
        }
    }

    fn check(&mut self) -> Result<(), String> {
        if !self.running.load(Ordering::SeqCst) {
            return Err("starting".into());
        }
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => mysql::Conn::new(self.opts.clone())
                .map_err(|e| format!("MySQL unreachable: {e}"))?,
        };
        conn.ping().map_err(|e| format!("MySQL unreachable: {e}"))?;
        // Kept only while it answers; a failed one is replaced next time.
        self.conn = Some(conn);
        Ok(())
    }
}

pub(crate) fn start(
    addr: &str,
    metrics: Arc<Metrics>,
    ready: Readiness,
) -> Result<Endpoint, HttpError> {
    let server = Server::http(addr).map_err(|e| HttpError {
        addr: addr.to_string(),
        reason: e.to_string(),
    })?;
    let bound = server
        .server_addr()
        .to_ip()
        .map_or_else(|| addr.to_string(), |a| a.to_string());
    let registry = metrics.registry();
    let stop = Arc::new(AtomicBool::new(false));
    let spawn_error = |e: std::io::Error| HttpError {
        addr: addr.to_string(),
        reason: e.to_string(),
    };
    // The gauge is probed on a thread of its own: a probe of an unreachable
    // MySQL takes seconds, which would make scrapes time out. Nobody waits
    // for it to stop, so that such a probe never holds up an exit.
    {
        let (mut ready, metrics, flag) = (ready.another(), metrics.clone(), stop.clone());
        std::thread::Builder::new()
            .name("ready-probe".into())
            .spawn(move || probe_ready(&mut ready, &metrics, &flag))
            .map_err(spawn_error)?;
    }
    let flag = stop.clone();
    let handle = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || serve(server, registry, metrics, ready, flag))
        .map_err(spawn_error)?;
    log::info!("metrics and health endpoints on http://{bound}/metrics, /healthz, /readyz");
    Ok(Endpoint {
        stop,
        handle: Some(handle),
    })
}

/// Keeps the `ready` gauge to what `/readyz` would answer, until `stop`.
fn probe_ready(ready: &mut Readiness, metrics: &Metrics, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        metrics.ready.set(i64::from(ready.check().is_ok()));
        let next = std::time::Instant::now() + READY_EVERY;
        while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < next {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn serve(
    server: Server,
    registry: Registry,
    metrics: Arc<Metrics>,
    mut ready: Readiness,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let request = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("metrics endpoint: {e}");
                continue;
            }
        };
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let response = match path.as_str() {
            "/metrics" => {
                let pool = ready.pool.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let in_use = pool.map_or(0, |p| {
                    let state = p.state();
                    state.connections - state.idle_connections
                });
                metrics.pool_in_use.set(i64::from(in_use));
                metrics.refresh_process();
                let mut body = String::new();
                match prometheus_client::encoding::text::encode(&mut body, &registry) {
                    Ok(()) => {
                        let response = Response::from_string(body);
                        match Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                        ) {
                            Ok(h) => response.with_header(h),
                            Err(()) => response,
                        }
                    }
                    Err(e) => Response::from_string(e.to_string()).with_status_code(500),
                }
            }
            "/healthz" => Response::from_string("ok\n"),
            "/readyz" => match ready.check() {
                Ok(()) => Response::from_string("ready\n"),
                Err(why) => {
                    Response::from_string(format!("not ready: {why}\n")).with_status_code(503)
                }
            },
            _ => Response::from_string("not found\n").with_status_code(404),
        };
        let _ = request.respond(response);
    }
}
