//! Routing by the key column's collation, against a real server: the
//! weights computed locally for ASCII ids are the server's own, and ids the
//! server holds equal go to one writer.
//!
//! Needs the test MariaDB/MySQL on 127.0.0.1:$KMS_MYSQL_PORT (default 3307,
//! user root, password root; `scripts/mariadb-local.sh start`), and fails
//! when it is not there.

use kafka_mysql_sink::internals::{ensure_table, KeyCollation, Router, Routing};
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};

fn opts() -> Opts {
    let port: u16 = std::env::var("KMS_MYSQL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3307);
    Opts::from(
        OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(port)
            .user(Some("root"))
            .pass(Some("root"))
            .prefer_socket(false)
            .init(vec!["SET NAMES utf8mb4"]),
    )
}

fn connect() -> Conn {
    let opts = opts();
    Conn::new(opts.clone()).unwrap_or_else(|e| {
        panic!(
            "no test server at 127.0.0.1:{} ({e}); start one with scripts/mariadb-local.sh start \
             or point KMS_MYSQL_PORT at one",
            opts.get_tcp_port()
        )
    })
}

/// xorshift64*: reproducible strings without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// An ASCII string of up to 40 characters, heavy in what collations
    /// treat specially: spaces (trailing ones above all), control
    /// characters, punctuation, both cases.
    fn ascii(&mut self) -> String {
        const SPECIAL: &[u8] = b" \0\t\n\r\x0b\x0c\x01\x1f\x7f-_.,;:!?'\"`~^@#$%&*+=<>/\\|()[]{}";
        let len = self.below(41);
        let mut s: Vec<u8> = (0..len)
            .map(|_| match self.below(4) {
                0 => SPECIAL[self.below(SPECIAL.len())],
                1 => self.below(128) as u8,
                _ => b"aAbBzZ09xX"[self.below(10)],
            })
            .collect();
        let spaces = self.below(4);
        s.extend(std::iter::repeat_n(b' ', spaces));
        String::from_utf8(s).unwrap()
    }
}

fn server_weights(conn: &mut Conn, collation: &str, s: &str) -> Vec<u8> {
    let w: Option<Vec<u8>> = conn
        .exec_first(
            format!("SELECT WEIGHT_STRING(CONVERT(? USING utf8mb4) COLLATE {collation})"),
            (s,),
        )
        .unwrap();
    w.unwrap()
}

fn server_equal(conn: &mut Conn, collation: &str, a: &str, b: &str) -> bool {
    let eq: Option<i64> = conn
        .exec_first(
            format!(
                "SELECT CONVERT(? USING utf8mb4) COLLATE {collation} \
                 = CONVERT(? USING utf8mb4) COLLATE {collation}"
            ),
            (a, b),
        )
        .unwrap();
    eq == Some(1)
}

const COLLATIONS: [&str; 3] = ["utf8mb4_unicode_ci", "utf8mb4_general_ci", "utf8mb4_bin"];

#[test]
fn ascii_weights_computed_locally_are_the_servers() {
    let mut conn = connect();
    for collation in COLLATIONS {
        let c = KeyCollation::named(&mut conn, opts(), collation).unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let s = rng.ascii();
            let local = c
                .ascii_weights(&s)
                .unwrap_or_else(|| panic!("{collation}: ASCII ids not weighed locally"));
            assert_eq!(
                local,
                server_weights(&mut conn, collation, &s),
                "{collation}: {s:?}"
            );
        }
    }
}

/// Spellings of `s` that some collations hold equal to it.
fn variants(s: &str) -> Vec<String> {
    vec![
        s.to_uppercase(),
        s.to_lowercase(),
        format!("{s} "),
        format!("{s}   "),
        format!("{s} \0"),
        format!("\0{s}"),
        s.trim_end().to_string(),
        s.replace('a', "\u{e1}"),
        s.replace('s', "\u{df}"),
        format!("{s}\u{a0}"),
    ]
}

#[test]
fn ids_the_server_holds_equal_go_to_one_writer() {
    let mut conn = connect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut ids: Vec<String> = (0..300).map(|_| rng.ascii()).collect();
    ids.extend(
        [
            "ABC",
            "x",
            "a\0b",
            "caf\u{e9}",
            "CAFE",
            "stra\u{df}e",
            "strasse",
            "ss",
            "x\u{a0}",
            "a-b",
            "ab",
        ]
        .map(String::from),
    );
    for collation in COLLATIONS {
        let c = KeyCollation::named(&mut conn, opts(), collation).unwrap();
        let mut equal_pairs = 0;
        for writers in [3, 7, 16] {
            let (mut router, _inboxes) = Router::new(writers, 64, Routing::ByKey, c.clone());
            for id in &ids {
                for v in variants(id) {
                    if server_equal(&mut conn, collation, id, &v) {
                        equal_pairs += 1;
                        assert_eq!(
                            router.writer_for_key(id),
                            router.writer_for_key(&v),
                            "{collation}, {writers} writers: {id:?} = {v:?}"
                        );
                    }
                }
            }
        }
        assert!(equal_pairs > 0);
    }
}

#[test]
fn a_collation_with_contractions_has_every_key_weighed_by_the_server() {
    let mut conn = connect();
    // utf8mb4_danish_ci: "aa" is one letter, "å".
    let c = KeyCollation::named(&mut conn, opts(), "utf8mb4_danish_ci").unwrap();
    assert_eq!(c.ascii_weights("aa"), None);
    let (mut router, _inboxes) = Router::new(16, 64, Routing::ByKey, c);
    for (a, b) in [
        ("aa", "\u{e5}"),
        ("AA ", "\u{c5}"),
        ("x", "x "),
        ("Kaare", "k\u{e5}re"),
    ] {
        assert!(
            server_equal(&mut conn, "utf8mb4_danish_ci", a, b),
            "{a:?} = {b:?}"
        );
        assert_eq!(
            router.writer_for_key(a),
            router.writer_for_key(b),
            "{a:?} / {b:?}"
        );
    }
}

#[test]
fn the_sinks_table_is_read_as_unicode_ci_with_pad_space() {
    struct DropDb(Conn, String);
    impl Drop for DropDb {
        fn drop(&mut self) {
            let _ = self
                .0
                .query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.1));
        }
    }
    let db = format!("kms_collation_{}", std::process::id());
    let mut guard = DropDb(connect(), db.clone());
    ensure_table(&mut guard.0, &db, "orders").unwrap();
    let c = KeyCollation::read(&mut guard.0, opts(), &db, "orders").unwrap();
    assert_eq!(c.name(), "utf8mb4_unicode_ci");
    assert!(c.pad_space());
    assert!(c.ascii_weights("abc").is_some());
}

#[test]
fn a_connection_the_server_closed_is_replaced() {
    let mut conn = connect();
    // The router's own connection times out after a second idle.
    let short = Opts::from(
        OptsBuilder::from_opts(opts())
            .init(vec!["SET NAMES utf8mb4", "SET SESSION wait_timeout = 1"]),
    );
    let c = KeyCollation::named(&mut conn, short, "utf8mb4_unicode_ci").unwrap();
    let (mut router, _inboxes) = Router::new(16, 64, Routing::ByKey, c);
    let before = router.writer_for_key("stra\u{df}e");
    assert_eq!(before, router.writer_for_key("STRASSE"));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let started = std::time::Instant::now();
    assert_eq!(router.writer_for_key("Stra\u{df}e "), before);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}
