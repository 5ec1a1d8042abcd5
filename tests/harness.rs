//! The fault-injection harness itself, against the test MariaDB: the relay's
//! modes, and the server helpers.
//!
//! The tests that change server globals take `server::serial()`; nothing
//! else in this binary depends on a global's value.

mod common;
#[path = "common/relay.rs"]
mod relay;
#[path = "common/server.rs"]
mod server;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};
use relay::{Mode, Relay};
use server::{GlobalGuard, RowLock};

/// Options for a connection through the relay, with a read timeout.
fn via(relay: &Relay, read_timeout: Option<Duration>) -> OptsBuilder {
    mysql_opts()
        .tcp_port(relay.port())
        .read_timeout(read_timeout)
        .write_timeout(Some(Duration::from_secs(5)))
        .tcp_connect_timeout(Some(Duration::from_secs(5)))
}

/// A socket read timeout, however the driver wraps it.
fn is_read_timeout(err: &mysql::Error) -> bool {
    use mysql::mysql_common::proto::codec::error::PacketCodecError;
    let io = match err {
        mysql::Error::IoError(e) => e,
        mysql::Error::CodecError(PacketCodecError::Io(e)) => e,
        _ => return false,
    };
    matches!(
        io.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Runs `SELECT n` on `conn` in another thread; the answer comes on the
/// returned channel (and the connection with it).
fn select_in_background(
    mut conn: Conn,
    n: u32,
) -> mpsc::Receiver<(Result<Option<u32>, mysql::Error>, Conn)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let got = conn.query_first::<u32, _>(format!("SELECT {n}"));
        let _ = tx.send((got, conn));
    });
    rx
}

#[test]
fn a_query_through_the_relay_works() {
    drop(mysql());
    let relay = Relay::start(mysql_port());
    assert_eq!(relay.mode(), Mode::Pass);
    let mut conn = Conn::new(Opts::from(via(&relay, Some(Duration::from_secs(5))))).unwrap();
    let got: Option<u32> = conn.query_first("SELECT 42").unwrap();
    assert_eq!(got, Some(42));
    // A second connection at the same time.
    let mut other = Conn::new(Opts::from(via(&relay, Some(Duration::from_secs(5))))).unwrap();
    let got: Option<String> = other.query_first("SELECT REPEAT('x', 200000)").unwrap();
    assert_eq!(got.map(|s| s.len()), Some(200_000));
    assert_eq!(relay.open_connections(), 2);
    assert_eq!(relay.accepted(), 2);
}

#[test]
fn a_held_query_answers_late_and_in_order_once_passed() {
    drop(mysql());
    let relay = Relay::start(mysql_port());
    let conn = Conn::new(Opts::from(via(&relay, Some(Duration::from_secs(30))))).unwrap();
    relay.hold();
    let started = Instant::now();
    let answer = select_in_background(conn, 7);
    assert!(
        answer.recv_timeout(Duration::from_millis(500)).is_err(),
        "a held query answered"
    );
    relay.pass();
    let (got, mut conn) = answer
        .recv_timeout(Duration::from_secs(10))
        .expect("no answer after pass");
    assert_eq!(got.unwrap(), Some(7));
    assert!(started.elapsed() >= Duration::from_millis(500));
    // The connection is in step afterwards.
    let got: Option<u32> = conn.query_first("SELECT 8").unwrap();
    assert_eq!(got, Some(8));
}

#[test]
fn a_connection_opened_while_held_is_held_too() {
    drop(mysql());
    let relay = Relay::start(mysql_port());
    relay.hold();
    let opts = via(&relay, Some(Duration::from_secs(30)));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ =
            tx.send(Conn::new(Opts::from(opts)).map(|mut c| c.query_first::<u32, _>("SELECT 9")));
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "connected through a held relay"
    );
    assert_eq!(relay.accepted(), 1);
    relay.pass();
    let got = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(got.unwrap(), Some(9));
}

#[test]
fn a_dropped_query_times_out_on_the_client() {
    drop(mysql());
    let relay = Relay::start(mysql_port());
    let mut conn = Conn::new(Opts::from(via(&relay, Some(Duration::from_secs(1))))).unwrap();
    let got: Option<u32> = conn.query_first("SELECT 1").unwrap();
    assert_eq!(got, Some(1));
    relay.drop_traffic();
    let started = Instant::now();
    let err = conn
        .query_first::<u32, _>("SELECT 2")
        .expect_err("a query answered through dropped traffic");
    let waited = started.elapsed();
    assert!(is_read_timeout(&err), "{err:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Not closed: the relay still has the connection.
    assert_eq!(relay.open_connections(), 1);
    // Passing again does not bring the lost bytes back: no late answer.
    relay.pass();
    let mut fresh = Conn::new(Opts::from(via(&relay, Some(Duration::from_secs(5))))).unwrap();
    let got: Option<u32> = fresh.query_first("SELECT 3").unwrap();
    assert_eq!(got, Some(3));
}

#[test]
fn cut_closes_current_connections_and_new_ones_still_work() {
    drop(mysql());
    let relay = Relay::start(mysql_port());
    let mut conn = Conn::new(Opts::from(via(&relay, Some(Duration::from_secs(5))))).unwrap();
    let _: Option<u32> = conn.query_first("SELECT 1").unwrap();
    relay.cut();
    let started = Instant::now();
    let err = conn
        .query_first::<u32, _>("SELECT 2")
        .expect_err("a query answered on a cut connection");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a cut is noticed at once, not by a timeout: {err}"
    );
    assert!(wait_for(Duration::from_secs(5), || relay
        .open_connections()
        == 0));
    let mut fresh = Conn::new(Opts::from(via(&relay, Some(Duration::from_secs(5))))).unwrap();
    let got: Option<u32> = fresh.query_first("SELECT 3").unwrap();
    assert_eq!(got, Some(3));
}

#[test]
fn dropping_the_relay_stops_it() {
    drop(mysql());
    let relay = Relay::start(mysql_port());
    let port = relay.port();
    let mut conn = Conn::new(Opts::from(via(&relay, Some(Duration::from_secs(5))))).unwrap();
    relay.hold();
    let started = Instant::now();
    drop(relay);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(conn.query_first::<u32, _>("SELECT 1").is_err());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn global_guard_sets_and_restores_even_on_panic() {
    let mut conn = mysql();
    let _serial = server::serial();
    let read = |conn: &mut Conn| -> u64 {
        conn.query_first("SELECT @@GLOBAL.max_allowed_packet")
            .unwrap()
            .unwrap()
    };
    let before = read(&mut conn);
    let want = if before == 8 << 20 { 4 << 20 } else { 8 << 20 };
    {
        let mut g = GlobalGuard::set("max_allowed_packet", &want.to_string());
        assert_eq!(read(&mut conn), want);
        assert_eq!(g.current(), Some(want.to_string()));
    }
    assert_eq!(read(&mut conn), before);

    let result = std::thread::spawn(move || {
        let _g = GlobalGuard::set("max_allowed_packet", &want.to_string());
        panic!("a failing test");
    })
    .join();
    assert!(result.is_err());
    assert_eq!(read(&mut conn), before, "restored while unwinding");

    // A string-valued global.
    let mode: String = conn
        .query_first("SELECT @@GLOBAL.sql_mode")
        .unwrap()
        .unwrap();
    {
        let _g = GlobalGuard::set("sql_mode", "''");
        let now: String = conn
            .query_first("SELECT @@GLOBAL.sql_mode")
            .unwrap()
            .unwrap();
        assert_eq!(now, "");
    }
    let after: String = conn
        .query_first("SELECT @@GLOBAL.sql_mode")
        .unwrap()
        .unwrap();
    assert_eq!(after, mode);
}

#[test]
fn a_row_lock_blocks_writers_until_released() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "rowlock");
    let _drop_db = server::DropDatabase(db.clone());
    conn.query_drop(format!("CREATE DATABASE `{db}`")).unwrap();
    conn.query_drop(format!(
        "CREATE TABLE `{db}`.`t` (id VARCHAR(36) PRIMARY KEY, v INT) ENGINE=InnoDB"
    ))
    .unwrap();
    conn.query_drop(format!(
        "INSERT INTO `{db}`.`t` VALUES ('a', 0), ('b', 0), ('c', 0)"
    ))
    .unwrap();
    let lock = RowLock::lock(&db, "t", &["b"]);
    assert_eq!(lock.locked(), 1);

    let mut writer = Conn::new(Opts::from(mysql_opts())).unwrap();
    writer
        .query_drop("SET SESSION innodb_lock_wait_timeout = 30")
        .unwrap();
    // Another row is free.
    writer
        .query_drop(format!("UPDATE `{db}`.`t` SET v = 1 WHERE id = 'a'"))
        .unwrap();
    let started = Instant::now();
    let released = lock.release_after(Duration::from_millis(800));
    let watcher = {
        let pattern = format!("UPDATE `{db}`.`t`%");
        std::thread::spawn(move || {
            let mut c = Conn::new(Opts::from(mysql_opts())).unwrap();
            let mut longest = Duration::ZERO;
            wait_for(Duration::from_secs(5), || {
                let r = server::running(&mut c, &pattern);
                if let Some(d) = r.first() {
                    longest = longest.max(*d);
                }
                longest >= Duration::from_millis(300)
            });
            longest
        })
    };
    writer
        .query_drop(format!("UPDATE `{db}`.`t` SET v = 2 WHERE id = 'b'"))
        .unwrap();
    let took = started.elapsed();
    released.join().unwrap();
    let seen_waiting = watcher.join().unwrap();
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        seen_waiting >= Duration::from_millis(300),
        "the blocked UPDATE was seen running for {seen_waiting:?}"
    );
    let v: Option<i32> = conn
        .query_first(format!("SELECT v FROM `{db}`.`t` WHERE id = 'b'"))
        .unwrap();
    assert_eq!(v, Some(2));
}
