//! Server-side fault injection for the test MariaDB: global settings changed
//! for the length of a test, row locks held by another session, and the lock
//! that keeps tests which change globals from running at the same time.
//!
//! Include next to `mod common;` with `#[path = "common/server.rs"] mod server;`.
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, Value};

use crate::common::mysql_opts;

/// Held by every test that changes a server global (through
/// [`GlobalGuard`]) or that must not see another test's change.
///
/// Tests of one binary run in parallel threads and binaries run one after
/// another, so a test that changes globals goes in a test file of such
/// tests, each taking this lock first (with [`serial`]).
pub static SERIAL: Mutex<()> = Mutex::new(());

/// Takes [`SERIAL`]; a test that panicked while holding it does not poison
/// the others.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn connect() -> Conn {
    Conn::new(Opts::from(mysql_opts())).expect("connect to the test MariaDB")
}

fn check_name(name: &str) {
    assert!(
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.'),
        "not a system variable name: {name:?}"
    );
}

/// `SET GLOBAL name = value` for as long as the guard lives; the previous
/// value is put back when it is dropped, also when the test panics.
///
/// A global is copied into each session when the session connects: start
/// the sink (or open the connection that must see the value) after the
/// guard. Take [`serial`] first.
pub struct GlobalGuard {
    name: String,
    previous: Value,
    conn: Option<Conn>,
}

impl GlobalGuard {
    /// `value` is SQL text, e.g. `"4194304"` or `"''"`.
    pub fn set(name: &str, value: &str) -> GlobalGuard {
        check_name(name);
        let mut conn = connect();
        // The binary protocol keeps the value's type (a number stays a
        // number), so it can be set back exactly as it was.
        let previous: Value = conn
            .exec_first(format!("SELECT @@GLOBAL.{name}"), ())
            .unwrap_or_else(|e| panic!("reading @@GLOBAL.{name}: {e}"))
            .unwrap_or(Value::NULL);
        conn.query_drop(format!("SET GLOBAL {name} = {value}"))
            .unwrap_or_else(|e| panic!("SET GLOBAL {name} = {value}: {e}"));
        GlobalGuard {
            name: name.to_string(),
            previous,
            conn: Some(conn),
        }
    }

    /// The value the global had before.
    pub fn previous(&self) -> &Value {
        &self.previous
    }

    /// The global's current value, as text.
    pub fn current(&mut self) -> Option<String> {
        let name = self.name.clone();
        self.conn
            .get_or_insert_with(connect)
            .query_first(format!("SELECT @@GLOBAL.{name}"))
            .unwrap_or_else(|e| panic!("reading @@GLOBAL.{name}: {e}"))
    }

    fn restore(&mut self) -> Result<(), mysql::Error> {
        let sql = format!("SET GLOBAL {} = ?", self.name);
        let value = (self.previous.clone(),);
        // The guard's own connection may have broken during the test: one
        // more try on a new one.
        if let Some(c) = self.conn.as_mut() {
            if c.exec_drop(&sql, value.clone()).is_ok() {
                return Ok(());
            }
        }
        Conn::new(Opts::from(mysql_opts()))?.exec_drop(&sql, value)
    }
}

impl Drop for GlobalGuard {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            // Never a second panic while unwinding; the message says what
            // to put back by hand.
            eprintln!(
                "GlobalGuard: could not restore {} to {:?}: {e}",
                self.name, self.previous
            );
        }
    }
}

/// Drops a test's database when it goes out of scope, also when the test
/// fails: declare it right after the database is named, so that whatever
/// writes to the database (declared later) is dropped first.
pub struct DropDatabase(pub String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        if let Ok(mut c) = Conn::new(Opts::from(mysql_opts())) {
            let _ = c.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.0));
        }
    }
}

/// Rows locked by another session: a transaction that has run
/// `SELECT ... FOR UPDATE` on the given ids and stays open until released
/// (or dropped, which rolls it back).
///
/// An id that is not in the table is locked too, as a gap lock, which also
/// blocks inserts of its neighbours: lock rows that exist.
pub struct RowLock {
    conn: Option<Conn>,
    locked: usize,
}

impl RowLock {
    /// Locks the rows of `db`.`table` whose `id` is in `ids`.
    pub fn lock(db: &str, table: &str, ids: &[&str]) -> RowLock {
        let mut conn = connect();
        conn.query_drop("START TRANSACTION").unwrap();
        let marks = vec!["?"; ids.len()].join(",");
        let found: Vec<String> = conn
            .exec(
                format!("SELECT id FROM `{db}`.`{table}` WHERE id IN ({marks}) FOR UPDATE"),
                ids.to_vec(),
            )
            .unwrap_or_else(|e| panic!("locking rows of `{db}`.`{table}`: {e}"));
        RowLock {
            conn: Some(conn),
            locked: found.len(),
        }
    }

    /// How many of the ids were rows (record locks rather than gap locks).
    pub fn locked(&self) -> usize {
        self.locked
    }

    /// Ends the transaction now.
    pub fn release(mut self) {
        self.rollback();
    }

    /// Ends the transaction `after` from now, in a background thread; join
    /// the handle to wait for the release.
    pub fn release_after(self, after: Duration) -> JoinHandle<()> {
        std::thread::spawn(move || {
            std::thread::sleep(after);
            self.release();
        })
    }

    fn rollback(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = c.query_drop("ROLLBACK");
        }
    }
}

impl Drop for RowLock {
    fn drop(&mut self) {
        self.rollback();
    }
}

/// How long each statement now running on the server whose text matches
/// `pattern` (SQL `LIKE`, e.g. ``"INSERT INTO `my_db`.%"``) has been
/// running, longest first; the caller's own statement is left out.
///
/// A statement blocked by a [`RowLock`] shows here for as long as it waits
/// (MariaDB's `information_schema.INNODB_TRX` does not always list such
/// waits, so the process list is what to watch).
pub fn running(conn: &mut Conn, pattern: &str) -> Vec<Duration> {
    let ms: Vec<f64> = conn
        .exec(
            "SELECT CAST(TIME_MS AS DOUBLE) FROM information_schema.PROCESSLIST \
             WHERE COMMAND = 'Query' AND INFO LIKE ? AND ID <> CONNECTION_ID() \
             ORDER BY TIME_MS DESC",
            (pattern,),
        )
        .expect("reading information_schema.PROCESSLIST");
    ms.into_iter()
        .map(|m| Duration::from_secs_f64(m.max(0.0) / 1000.0))
        .collect()
}
