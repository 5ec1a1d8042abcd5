//! Partition ownership kept in MySQL, so that a writer cut off from its
//! group cannot land a stale write.
//!
//! Each partition has a row in the offsets table with a generation number.
//! An instance that is assigned a partition claims it: it bumps the
//! generation, which takes the row's lock and so waits for every
//! transaction still holding it. Every write transaction first reads the
//! generations of its partitions under a lock and goes on only with the
//! partitions whose generation is still the one its rows were read under;
//! the claim of a new owner therefore happens either entirely before such a
//! transaction (which then sees the new generation and drops the rows) or
//! entirely after it (whose rows were legitimately the old owner's to
//! write). In exactly-once mode the same row also carries the partition's
//! next offset, written in the transaction that writes the rows.

use std::time::{SystemTime, UNIX_EPOCH};

use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts};

use crate::config::{Config, Delivery};
use crate::sql::{self, OffsetsRows};
use crate::types::{Coord, Part, Topic};

/// Which offsets-table rows an instance works on, and how.
#[derive(Debug, Clone)]
pub(crate) struct FenceSpec {
    /// The offsets table, quoted and qualified.
    pub(crate) table: String,
    pub(crate) group: String,
    pub(crate) delivery: Delivery,
    /// Whether the table has the columns for the log's ids and pending
    /// starts (see `sql::LATER_COLUMNS`); claims use them when it does.
    pub(crate) marks: bool,
}

impl FenceSpec {
    pub(crate) fn new(config: &Config) -> FenceSpec {
        FenceSpec {
            table: sql::qualified(&config.mysql.database, &config.offsets_table()),
            group: config.kafka.group_id.clone(),
            delivery: config.sink.delivery,
            marks: false,
        }
    }

    pub(crate) fn rows(&self) -> OffsetsRows<'_> {
        OffsetsRows {
            table: &self.table,
            group: &self.group,
        }
    }

    pub(crate) fn exactly_once(&self) -> bool {
        self.delivery == Delivery::ExactlyOnce
    }
}

/// A partition's row as a transaction sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub part: Part,
    pub generation: u64,
    /// The next offset to read, as the last exactly-once transaction left it.
    pub next_offset: Option<i64>,
}

/// A partition's row as a claim sees it, under the claim's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claimed {
    pub(crate) standing: Standing,
    /// The ids of the log its offsets belong to, where recorded (see
    /// `source::LogId`).
    pub(crate) log_id: Option<String>,
    /// A start decided at an earlier claim that Kafka has not confirmed.
    pub(crate) reset_to: Option<i64>,
}

/// What a claim writes besides the new generations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Next offsets to set: where partitions start instead of where their
    /// rows said (an offset reset).
    pub(crate) next: Vec<Coord>,
    /// Each claimed partition's pending start (`None`: none), and the ids
    /// of the log its offsets belong to from now on (`None`: left as it is, where
    /// the id is unknown or the partition is not started).
    pub(crate) marks: Vec<(Part, Option<i64>, Option<String>)>,
    /// Partitions whose next offset is cleared (an at-least-once start
    /// over one an exactly-once run left).
    pub(crate) clear_next: Vec<Part>,
}

/// Claims `partitions` for `owner`: a new generation for each, read back in
/// the same transaction (so no other claim can slip in between). `settle`
/// sees the rows as claimed and says what else to write before the
/// transaction commits (see [`Settled`]): decided under the claim's lock,
/// the decision and the claim are one durable step.
pub(crate) fn claim(
    conn: &mut Conn,
    spec: &FenceSpec,
    partitions: &[Part],
    owner: &str,
    settle: &dyn Fn(&[Claimed]) -> Settled,
) -> Result<Vec<Standing>, mysql::Error> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    // In ascending order, as writers lock them (see OffsetsRows::read), so
    // that a claim and a writer never wait for each other in a circle.
    let mut partitions = partitions.to_vec();
    partitions.sort_unstable();
    partitions.dedup();
    let partitions = &partitions[..];
    let rows = spec.rows();
    let mut tx = conn.start_transaction(TxOpts::default())?;
    tx.query_drop(rows.claim(partitions, owner, first_generation()))?;
    let mut got = read(&mut tx, &rows, partitions, true)?;
    // Every partition claimed must be read back: one that is not would be
    // read under no generation, and all of its rows dropped as fenced.
    if let Some(p) = partitions
        .iter()
        .find(|p| !got.iter().any(|s| s.part == **p))
    {
        return Err(mysql::Error::IoError(std::io::Error::other(format!(
            "the claim of partition {p} did not read its row back"
        ))));
    }
    let marks: Vec<(Part, Option<String>, Option<i64>)> = if spec.marks {
        let got: Vec<(String, i32, Option<String>, Option<i64>)> =
            tx.query(rows.marks(partitions))?;
        got.into_iter()
            .map(|(t, p, id, reset)| (Part::new(Topic::named(&t), p), id, reset))
            .collect()
    } else {
        Vec::new()
    };
    let claimed: Vec<Claimed> = got
        .iter()
        .map(|s| {
            let mark = marks.iter().find(|m| m.0 == s.part);
            Claimed {
                standing: *s,
                log_id: mark.and_then(|m| m.1.clone()),
                reset_to: mark.and_then(|m| m.2),
            }
        })
        .collect();
    let settled = settle(&claimed);
    if !settled.next.is_empty() {
        run_multi(&mut tx, &rows.set_next(&settled.next))?;
        for s in &mut got {
            if let Some(c) = settled.next.iter().find(|c| c.part == s.part) {
                s.next_offset = Some(c.offset);
            }
        }
    }
    if !settled.clear_next.is_empty() {
        run_multi(&mut tx, &rows.clear_next(&settled.clear_next))?;
    }
    if spec.marks {
        let marks: Vec<(Part, Option<i64>, Option<&str>)> = settled
            .marks
            .iter()
            .map(|(p, r, id)| (*p, *r, id.as_deref()))
            .collect();
        run_multi(&mut tx, &rows.set_marks(&marks))?;
    }
    tx.commit()?;
    Ok(got)
}

/// A new row's first generation: the time in milliseconds, times a
/// thousand, plus one. A row deleted and claimed again later starts above
/// every generation it had (claims come at most one a millisecond), so rows
/// read under an old claim never pass again; and the generation modulo a
/// thousand counts a row's claims, for people.
fn first_generation() -> u64 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    now_ms * 1000 + 1
}

/// Sets the partitions' next offsets (an operator's reset), each under a
/// new generation, so that any writer still holding rows of them read
/// under an earlier claim is fenced off.
/// Returns the partitions' new generations; with the table's marks, the
/// offsets stay pending (see [`Claimed::reset_to`]) until
/// [`clear_resets`] says Kafka has them.
pub(crate) fn reset(
    conn: &mut Conn,
    spec: &FenceSpec,
    next: &[Coord],
    owner: &str,
    log_id: Option<&str>,
) -> Result<Vec<Standing>, mysql::Error> {
    if next.is_empty() {
        return Ok(Vec::new());
    }
    let rows = spec.rows();
    let marks = spec.marks.then_some(log_id);
    let mut tx = conn.start_transaction(TxOpts::default())?;
    tx.query_drop(rows.reset(next, owner, first_generation(), marks))?;
    let mut partitions: Vec<Part> = next.iter().map(|c| c.part).collect();
    partitions.sort_unstable();
    let got = read(&mut tx, &rows, &partitions, true)?;
    tx.commit()?;
    Ok(got)
}

/// Clears the pending starts of partitions held at the given generations:
/// Kafka has confirmed them.
pub(crate) fn clear_resets(
    conn: &mut Conn,
    spec: &FenceSpec,
    claims: &[(Part, u64)],
) -> Result<(), mysql::Error> {
    if !spec.marks || claims.is_empty() {
        return Ok(());
    }
    run_multi(conn, &spec.rows().clear_resets(claims))
}

/// A partition's row for people (`offsets show`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetsRow {
    pub(crate) partition: i32,
    pub(crate) next_offset: Option<i64>,
    pub(crate) generation: u64,
    pub(crate) owner: String,
    pub(crate) updated_at: String,
    pub(crate) log_id: Option<String>,
    pub(crate) reset_to: Option<i64>,
}

/// Every row of the group and `topic`.
pub(crate) fn list(
    conn: &mut Conn,
    spec: &FenceSpec,
    topic: &str,
) -> Result<Vec<OffsetsRow>, mysql::Error> {
    let rows: Vec<mysql::Row> = conn.query(spec.rows().list(topic, spec.marks))?;
    rows.into_iter()
        .map(|row| {
            let (partition, next_offset, generation, owner, updated_at, log_id, reset_to) =
                mysql::from_row_opt(row).map_err(|e| mysql::Error::FromRowError(e.0))?;
            Ok(OffsetsRow {
                partition,
                next_offset,
                generation,
                owner,
                updated_at,
                log_id,
                reset_to,
            })
        })
        .collect()
}

/// Reads the partitions' rows under a lock held until the transaction ends.
pub(crate) fn read(
    conn: &mut impl Queryable,
    rows: &OffsetsRows<'_>,
    partitions: &[Part],
    exclusive: bool,
) -> Result<Vec<Standing>, mysql::Error> {
    read_multi(conn, &rows.read(partitions, exclusive))
}

/// Reads partitions' rows from a multi-statement `text`, whose result sets
/// with rows are the ownership read's (see [`OffsetsRows::read`]). Every
/// set is read, and every statement's error seen.
pub(crate) fn read_multi(
    conn: &mut impl Queryable,
    text: &str,
) -> Result<Vec<Standing>, mysql::Error> {
    let mut result = conn.query_iter(text)?;
    let mut out = Vec::new();
    while let Some(set) = result.iter() {
        for row in set {
            let (topic, partition, generation, next_offset): (String, i32, u64, Option<i64>) =
                mysql::from_row_opt(row?).map_err(|e| mysql::Error::FromRowError(e.0))?;
            out.push(Standing {
                part: Part::new(Topic::named(&topic), partition),
                generation,
                next_offset,
            });
        }
    }
    Ok(out)
}

/// Runs several statements sent as one, returning the first error among
/// them. (`query_drop` would see only the first statement's: the rest are
/// drained, and their errors dropped, when the result is.)
pub(crate) fn run_multi(conn: &mut impl Queryable, text: &str) -> Result<(), mysql::Error> {
    let mut result = conn.query_iter(text)?;
    while let Some(set) = result.iter() {
        for row in set {
            row?;
        }
    }
    Ok(())
}

/// This process as an owner: host, process id and start time, so that a
/// restarted process on the same host is a different owner.
pub(crate) fn owner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into());
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{}:{}:{started}", host.trim(), std::process::id())
}
