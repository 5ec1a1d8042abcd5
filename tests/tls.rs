//! TLS to MySQL, against a MariaDB of our own started with a test CA.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use kafka_mysql_sink::config::{MysqlConfig, SslMode};
use kafka_mysql_sink::internals as db;
use kafka_mysql_sink::pipeline::RunOptions;
use mysql::prelude::Queryable;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed for the TLS tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it; plus a second,
/// unrelated CA.
fn make_certs(dir: &Path) {
    let subj = |cn: &str| format!("/CN={cn}");
    for (name, cn) in [("ca", "kms-test-ca"), ("other-ca", "kms-other-ca")] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &subj(cn),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &subj("127.0.0.1"),
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.pem",
            "-extfile",
            "san.ext",
        ],
    );
}

struct TlsMariaDb {
    port: u16,
    dir: PathBuf,
}

impl TlsMariaDb {
    fn script(&self, action: &str) -> bool {
        let d = self.dir.display();
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mariadb-local.sh"))
            .arg(action)
            .env("KMS_MYSQL_PORT", self.port.to_string())
            .env("KMS_MYSQL_DIR", self.dir.join("db"))
            .env(
                "KMS_MYSQL_EXTRA_ARGS",
                format!("--ssl-ca={d}/ca.pem --ssl-cert={d}/server.pem --ssl-key={d}/server.key"),
            )
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for TlsMariaDb {
    fn drop(&mut self) {
        self.script("clean");
    }
}

fn cfg(port: u16, mode: SslMode, ca: Option<PathBuf>) -> MysqlConfig {
    MysqlConfig {
        host: "127.0.0.1".into(),
        port,
        ssl_mode: mode,
        ssl_ca: ca,
        connect_retries: 1,
        timeout: std::time::Duration::from_millis(5000),
        ..MysqlConfig::default()
    }
}

fn cipher(c: &MysqlConfig) -> Result<String, String> {
    let mut conn = db::connect_with_retry(c).map_err(|e| e.to_string())?;
    let row: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .map_err(|e| e.to_string())?;
    Ok(row.map(|r| r.1).unwrap_or_default())
}

#[test]
fn tls_modes_encrypt_verify_and_refuse_as_configured() {
    // The shared plain server must be up: refusing TLS from it is checked
    // below, and a missing server would refuse anything.
    drop(mysql());
    let dir = scratch_dir("tls");
    make_certs(&dir);
    let server = TlsMariaDb {
        // Not a fixed port: the shared server, or another checkout's TLS
        // test, may hold any given one.
        port: free_port(),
        dir: dir.clone(),
    };
    assert!(server.script("start"), "cannot start the TLS MariaDB");
    let (ca, other) = (dir.join("ca.pem"), dir.join("other-ca.pem"));

    assert_eq!(
        cipher(&cfg(server.port, SslMode::Disabled, None)).unwrap(),
        ""
    );
    let c = cipher(&cfg(server.port, SslMode::Required, None)).unwrap();
    assert!(!c.is_empty(), "required mode is not encrypted");
    let c = cipher(&cfg(server.port, SslMode::VerifyCa, Some(ca.clone()))).unwrap();
    assert!(!c.is_empty());
    let c = cipher(&cfg(server.port, SslMode::VerifyIdentity, Some(ca.clone()))).unwrap();
    assert!(!c.is_empty());
    // A certificate from another CA is refused, with a message saying so.
    let err = cipher(&cfg(server.port, SslMode::VerifyCa, Some(other))).unwrap_err();
    assert!(err.contains("cannot connect to MySQL"), "{err}");
    // Asking for TLS from a server without it fails instead of silently
    // falling back to plain text.
    let plain = cipher(&cfg(mysql_port(), SslMode::Required, None));
    assert!(
        plain.is_err(),
        "TLS requested from a plain server: {plain:?}"
    );

    // The whole sink over verified TLS.
    let mut conn = mysql::Conn::new(mysql::Opts::from(mysql_opts().tcp_port(server.port))).unwrap();
    let dbname = fresh_db(&mut conn, "tls");
    let cluster = mock_cluster("enriched_orders", 2);
    let brokers = cluster.bootstrap_servers();
    produce_order_range(&brokers, "enriched_orders", 2, 500);
    let mut config = test_config(&brokers, "enriched_orders", "tls-group", &dbname);
    config.mysql = MysqlConfig {
        database: dbname.clone(),
        ..cfg(server.port, SslMode::VerifyIdentity, Some(ca))
    };
    let run = start_sink(config, RunOptions::until_caught_up());
    let summary = run.handle.join().unwrap().unwrap();
    assert_eq!(summary.counters.rows_written, 500);
    assert_eq!(count(&mut conn, &dbname, "orders"), 500);
}
