//! Claiming assigned partitions in MySQL before reading them (see
//! [`crate::fence`]), and, in exactly-once mode, where to read them from.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::SourceError;
use crate::config::{AutoOffsetReset, OnOutOfRange};
use crate::fence::{self, Claimed, FenceSpec, Settled, Standing};
use crate::metrics::Metrics;
use crate::types::Part;

/// How a claimed partition's start is chosen (see [`super::out_of_range`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Starting {
    pub(crate) on_out_of_range: OnOutOfRange,
    /// Where a partition without any offset starts.
    pub(crate) fresh: AutoOffsetReset,
}

/// This instance's claims, kept by the consumer.
pub(crate) struct Claimer {
    spec: FenceSpec,
    starting: Starting,
    opts: mysql::Opts,
    owner: String,
    conn: Mutex<Option<mysql::Conn>>,
    /// The generation of each partition this instance holds.
    generations: Mutex<HashMap<Part, u64>>,
    /// Why the partitions assigned cannot be read, for the consumer loop to
    /// stop on.
    failure: Mutex<Option<SourceError>>,
    /// Where partitions were started at an explicit offset.
    starts: Mutex<HashMap<Part, i64>>,
    /// Partitions whose pending start in MySQL is not cleared yet.
    unconfirmed: Mutex<HashSet<Part>>,
    /// How long a claim is retried before the run gives up.
    patience: Duration,
}

impl Claimer {
    pub(crate) fn new(
        spec: FenceSpec,
        opts: mysql::Opts,
        patience: Duration,
        starting: Starting,
    ) -> Claimer {
        Claimer {
            spec,
            starting,
            opts,
            owner: fence::owner_id(),
            conn: Mutex::new(None),
            generations: Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
            starts: Mutex::new(HashMap::new()),
            unconfirmed: Mutex::new(HashSet::new()),
            patience,
        }
    }

    pub(crate) fn exactly_once(&self) -> bool {
        self.spec.exactly_once()
    }

    pub(crate) fn starting(&self) -> Starting {
        self.starting
    }

    /// Whether claims record the log's ids and pending starts.
    pub(crate) fn marks(&self) -> bool {
        self.spec.marks
    }

    /// Notes that `partitions` start at a start pending in MySQL, to be
    /// cleared once Kafka has it ([`Self::confirmed`]).
    pub(crate) fn pending(&self, partitions: &[Part]) {
        let mut u = self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner());
        u.extend(partitions.iter().copied());
    }

    /// After a commit of `partitions` Kafka confirmed: clears the pending
    /// starts among them not cleared yet.
    pub(crate) fn confirm_if_pending(&self, partitions: &[Part]) {
        let due: Vec<Part> = {
            let u = self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner());
            if u.is_empty() {
                return;
            }
            partitions
                .iter()
                .copied()
                .filter(|p| u.contains(p))
                .collect()
        };
        if !due.is_empty() {
            self.confirmed(&due);
        }
    }

    /// Kafka confirmed the starts of `partitions`: their pending starts are
    /// cleared (where this instance still holds them). A failure only
    /// leaves them pending here, retried after the next commit; a claim
    /// before that starts them where this one did.
    pub(crate) fn confirmed(&self, partitions: &[Part]) {
        let claims: Vec<(Part, u64)> = partitions
            .iter()
            .map(|&p| (p, self.generation(p)))
            .collect();
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let result = match slot.as_mut() {
            Some(conn) => fence::clear_resets(conn, &self.spec, &claims),
            None => mysql::Conn::new(self.opts.clone())
                .and_then(|mut c| fence::clear_resets(&mut c, &self.spec, &claims).map(|()| c))
                .map(|c| {
                    *slot = Some(c);
                }),
        };
        match result {
            Ok(()) => {
                let mut u = self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner());
                for p in partitions {
                    u.remove(p);
                }
            }
            Err(e) => {
                *slot = None;
                log::warn!(
                    "cannot clear the pending starts of partitions {partitions:?} ({e}); \
                     retried after the next commit"
                );
            }
        }
    }

    /// Claims `partitions`, retrying while MySQL is unreachable or the rows
    /// are locked by a previous owner's transaction; `settle` names next
    /// offsets to set in the claim's transaction (see [`fence::claim`]). On
    /// success the new generations are current here; on failure the reason
    /// is kept for [`Claimer::failure`] and `None` returned.
    pub(crate) fn claim(
        &self,
        partitions: &[Part],
        metrics: &Metrics,
        settle: &dyn Fn(&[Claimed]) -> Settled,
    ) -> Option<Vec<Standing>> {
        let deadline = Instant::now() + self.patience;
        let mut delay = Duration::from_millis(100);
        loop {
            match self.try_claim(partitions, settle) {
                Ok(standing) => {
                    let mut g = self.generations.lock().unwrap_or_else(|p| p.into_inner());
                    for s in &standing {
                        g.insert(s.part, s.generation);
                    }
                    Metrics::add(&metrics.claims, standing.len() as u64);
                    return Some(standing);
                }
                Err(e) if Instant::now() + delay < deadline => {
                    log::warn!(
                        "cannot claim partitions {partitions:?} in MySQL yet: {e}; retrying in {} ms",
                        delay.as_millis()
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    self.fail(SourceError::Claim(format!(
                        "cannot claim partitions {partitions:?} in {} for {} s: {e}",
                        self.spec.table,
                        self.patience.as_secs()
                    )));
                    return None;
                }
            }
        }
    }

    fn try_claim(
        &self,
        partitions: &[Part],
        settle: &dyn Fn(&[Claimed]) -> Settled,
    ) -> Result<Vec<Standing>, mysql::Error> {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(mysql::Conn::new(self.opts.clone())?),
        };
        let result = fence::claim(conn, &self.spec, partitions, &self.owner, settle);
        if result.is_err() {
            // A fresh connection next time: this one may be broken.
            *slot = None;
        }
        result
    }

    /// The generation this instance holds `partition` at (0 for none).
    pub(crate) fn generation(&self, part: Part) -> u64 {
        self.generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&part)
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn forget(&self, partitions: &[Part]) {
        let mut g = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        let mut starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        let mut u = self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner());
        for p in partitions {
            g.remove(p);
            starts.remove(p);
            u.remove(p);
        }
    }

    /// Records that exactly-once `partition` starts at `offset`.
    pub(crate) fn started_at(&self, part: Part, offset: i64) {
        self.starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(part, offset);
    }

    /// Where exactly-once `partition` was started, if MySQL said.
    pub(crate) fn start(&self, part: Part) -> Option<i64> {
        self.starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&part)
            .copied()
    }

    /// Stops the run with `reason` (the first one stands).
    pub(crate) fn fail(&self, reason: SourceError) {
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
    }

    /// Why the assigned partitions cannot be read, if they cannot; the
    /// consumer loop stops on it.
    pub(crate) fn take_failure(&self) -> Option<SourceError> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}
