//! MySQL at start-up: connect (with the seed's retry policy), learn what the
//! server is, make sure the table is there and has the columns we write, and
//! build the writers' connection pool, whose sessions are set up so that the
//! server refuses what does not fit and answers lock waits before the client
//! gives up on it.

use std::ops::{Deref, DerefMut};
use std::thread;
use std::time::Duration;

mod offsets_table;

pub(crate) use offsets_table::{
    ensure_offsets_table, offsets_table_has_marks, probe_offsets_writes,
};

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, SslOpts};
use r2d2_mysql::MySqlConnectionManager;

use crate::config::{MysqlConfig, SslMode};
use crate::sql::{self, Dialect};

pub type Pool = r2d2::Pool<SessionManager>;
pub(crate) type PooledConn = r2d2::PooledConnection<SessionManager>;

/// A pooled MySQL session that can be condemned.
///
/// After a client-side error (a read timeout, a broken packet) the client no
/// longer knows where the conversation stands: the server may still be
/// running the statement and will answer it later, and the next statement
/// sent would read that answer as its own. Such a session must never be
/// used again; [`Session::condemn`] makes the pool close it instead of
/// handing it out.
pub struct Session {
    conn: Conn,
    condemned: bool,
}

impl Session {
    pub(crate) fn condemn(&mut self) {
        self.condemned = true;
    }
}

impl Deref for Session {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for Session {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// r2d2_mysql's manager, plus condemned sessions.
#[derive(Debug, Clone)]
pub struct SessionManager(MySqlConnectionManager);

impl r2d2::ManageConnection for SessionManager {
    type Connection = Session;
    type Error = mysql::Error;

    fn connect(&self) -> Result<Session, mysql::Error> {
        Ok(Session {
            conn: self.0.connect()?,
            condemned: false,
        })
    }

    fn is_valid(&self, s: &mut Session) -> Result<(), mysql::Error> {
        self.0.is_valid(&mut s.conn)
    }

    fn has_broken(&self, s: &mut Session) -> bool {
        s.condemned || self.0.has_broken(&mut s.conn)
    }
}

/// Seconds the server keeps an idle session open.
const SESSION_WAIT_TIMEOUT_SECS: u64 = 120;

/// Whole seconds the server waits for a row or metadata lock: below the
/// client's timeout where it can be, so that an ordinary lock wait comes
/// back as a server error (1205, retried on the same session) rather than
/// as a client timeout that costs the session.
pub(crate) fn lock_wait_seconds(client_timeout: Duration) -> u64 {
    (client_timeout.as_millis() as u64 * 3 / 4 / 1000).max(1)
}

/// What every session of the sink runs first.
///
/// Strict mode is added to whatever the server's mode is (its other flags
/// are kept): without it MySQL truncates a value that does not fit, with a
/// warning nobody reads, and two ids that differ after the 36th character
/// become one row. With it the statement fails and the row is
/// dead-lettered with the server's own error.
fn session_setup(cfg: &MysqlConfig) -> Vec<String> {
    let lock_wait = lock_wait_seconds(cfg.timeout);
    [
        "SET NAMES utf8mb4".to_string(),
        "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')"
            .to_string(),
        format!(
            "SET SESSION innodb_lock_wait_timeout = {lock_wait}, lock_wait_timeout = {lock_wait}"
        ),
        // A session whose client vanished (a network partition, a killed
        // process) holds its transaction's locks, the offsets rows among
        // them, until the server notices; this bounds that wait, well
        // above how long a writer keeps an idle session.
        format!("SET SESSION wait_timeout = {SESSION_WAIT_TIMEOUT_SECS}"),
    ]
    .into_iter()
    .chain(cfg.init_sql.iter().cloned())
    .collect()
}

/// Why MySQL could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "cannot connect to MySQL at {host}:{port} as {user} after {attempts} attempt(s): {source} \
         (check mysql.host/MYSQL_HOST, the port, the credentials, and that the server is up)"
    )]
    Connect {
        host: String,
        port: u16,
        user: String,
        attempts: u32,
        source: mysql::Error,
    },
    #[error("MySQL query failed during start-up ({what}): {source}")]
    Query {
        what: &'static str,
        source: mysql::Error,
    },
    #[error(
        "cannot create the offsets table {table}: {source}; grant the sink's user CREATE on \
         the database, or create the table once as an administrator:\n{ddl}"
    )]
    OffsetsTable {
        table: String,
        ddl: String,
        source: mysql::Error,
    },
    #[error(
        "table {table} exists but lacks column(s) {missing:?} that the sink writes; \
         add them or point mysql.table/MYSQL_TABLE at another table"
    )]
    MissingColumns { table: String, missing: Vec<String> },
    #[error("cannot route by the id column's collation: {0}")]
    KeyCollation(String),
}

/// What the writers need to know about the server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: String,
    pub dialect: Dialect,
    /// `@@max_allowed_packet`, the cap on a statement's size.
    pub max_allowed_packet: usize,
}

impl ServerInfo {
    pub fn statement_budget(&self) -> usize {
        statement_budget(self.max_allowed_packet)
    }
}

/// The largest statement the writers build: the packet limit less room for
/// the protocol header and for a server that counts slightly differently
/// from us.
pub(crate) fn statement_budget(max_allowed_packet: usize) -> usize {
    max_allowed_packet.saturating_sub(1024).max(4096)
}

/// Connection options shared by the start-up connection and the pool. No
/// database is selected: every statement names `db`.`table`, so the sink can
/// create the database when it is missing.
pub fn opts(cfg: &MysqlConfig) -> OptsBuilder {
    let timeout = Some(cfg.timeout);
    let tls = |ca: &Option<std::path::PathBuf>| {
        let opts = SslOpts::default();
        match ca {
            Some(path) => opts.with_root_cert_path(Some(path.clone())),
            None => opts,
        }
    };
    let ssl = match cfg.ssl_mode {
        SslMode::Disabled => None,
        // Encrypted, but like MySQL's REQUIRED the certificate is not checked.
        SslMode::Required => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        SslMode::VerifyCa => Some(tls(&cfg.ssl_ca).with_danger_skip_domain_validation(true)),
        SslMode::VerifyIdentity => Some(tls(&cfg.ssl_ca)),
    };
    OptsBuilder::new()
        .ssl_opts(ssl)
        .ip_or_hostname(Some(cfg.host.clone()))
        .tcp_port(cfg.port)
        .user(Some(cfg.user.clone()))
        .pass(Some(cfg.password.clone()))
        .prefer_socket(false)
        .tcp_connect_timeout(timeout)
        .read_timeout(timeout)
        .write_timeout(timeout)
        .init(session_setup(cfg))
}

/// Connects, retrying `connect_retries` times `connect_retry_delay` apart.
pub fn connect_with_retry(cfg: &MysqlConfig) -> Result<Conn, DbError> {
    let opts = Opts::from(opts(cfg));
    let mut attempt = 0;
    loop {
        attempt += 1;
        match Conn::new(opts.clone()) {
            Ok(conn) => return Ok(conn),
            Err(e) if attempt < cfg.connect_retries => {
                log::warn!(
                    "MySQL connection attempt {attempt}/{} to {}:{} failed: {e}; retrying in {} ms",
                    cfg.connect_retries,
                    cfg.host,
                    cfg.port,
                    cfg.connect_retry_delay.as_millis()
                );
                thread::sleep(cfg.connect_retry_delay);
            }
            Err(source) => {
                return Err(DbError::Connect {
                    host: cfg.host.clone(),
                    port: cfg.port,
                    user: cfg.user.clone(),
                    attempts: attempt,
                    source,
                })
            }
        }
    }
}

fn query_err(what: &'static str) -> impl FnOnce(mysql::Error) -> DbError {
    move |source| DbError::Query { what, source }
}

/// Reads the server's version and packet limit.
pub fn server_info(conn: &mut Conn) -> Result<ServerInfo, DbError> {
    let row: Option<(String, u64)> = conn
        .query_first("SELECT VERSION(), @@max_allowed_packet")
        .map_err(query_err("reading the server version"))?;
    let (version, max_packet) = row.unwrap_or_default();
    Ok(ServerInfo {
        dialect: Dialect::for_server_version(&version),
        version,
        max_allowed_packet: usize::try_from(max_packet).unwrap_or(usize::MAX),
    })
}

/// What start-up finds of the target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TableState {
    /// There, with every column the sink writes.
    Ready,
    /// Not there (nor, maybe, its database): start-up creates it.
    Missing { database_exists: bool },
}

/// Looks at the target table without changing anything; fails when it
/// exists without the columns the sink writes.
pub(crate) fn inspect_table(conn: &mut Conn, db: &str, table: &str) -> Result<TableState, DbError> {
    let db_exists: Option<String> = conn
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (db,),
        )
        .map_err(query_err("looking up the database"))?;
    let columns: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .map_err(query_err("reading the table's columns"))?;
    if columns.is_empty() {
        return Ok(TableState::Missing {
            database_exists: db_exists.is_some(),
        });
    }
    let missing: Vec<String> = sql::COLUMNS
        .iter()
        .filter(|c| !columns.iter().any(|have| have.eq_ignore_ascii_case(c)))
        .map(|c| c.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(DbError::MissingColumns {
            table: sql::qualified(db, table),
            missing,
        });
    }
    Ok(TableState::Ready)
}

/// Creates the database and the table when missing; when the table exists,
/// checks that every column the sink writes is there.
pub fn ensure_table(conn: &mut Conn, db: &str, table: &str) -> Result<(), DbError> {
    let TableState::Missing { database_exists } = inspect_table(conn, db, table)? else {
        return Ok(());
    };
    if !database_exists {
        log::info!("creating database {}", sql::quote_ident(db));
        conn.query_drop(format!(
            "CREATE DATABASE IF NOT EXISTS {} DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            sql::quote_ident(db)
        ))
        .map_err(query_err("creating the database"))?;
    }
    log::info!("creating table {}", sql::qualified(db, table));
    conn.query_drop(sql::create_table(db, table))
        .map_err(query_err("creating the table"))
}

/// Whether `db`.`table` exists.
pub(crate) fn table_exists(conn: &mut Conn, db: &str, table: &str) -> Result<bool, DbError> {
    let found: Option<String> = conn
        .exec_first(
            "SELECT TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .map_err(query_err("looking up a table"))?;
    Ok(found.is_some())
}

/// Whether the session's user may create tables in `db`, by a global or a
/// database-level grant (reads the grants; changes nothing).
pub(crate) fn may_create_tables(conn: &mut Conn, db: &str) -> Result<bool, DbError> {
    let me: Option<String> = conn
        .query_first("SELECT CURRENT_USER()")
        .map_err(query_err("reading the current user"))?;
    let me = me.unwrap_or_default();
    let (user, host) = me.rsplit_once('@').unwrap_or((me.as_str(), "%"));
    let grantee = format!("'{user}'@'{host}'");
    let n: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM ( \
               SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ? \
               UNION ALL \
               SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES \
               WHERE GRANTEE = ? AND ? LIKE TABLE_SCHEMA \
             ) AS p WHERE PRIVILEGE_TYPE = 'CREATE'",
            (&grantee, &grantee, db),
        )
        .map_err(query_err("reading the user's privileges"))?;
    Ok(n.unwrap_or(0) > 0)
}

/// Checks that the session may insert into the dead-letter table, and that
/// it has the columns the sink writes, by a statement that inserts nothing.
pub(crate) fn probe_dlq_writes(conn: &mut Conn, table: &str) -> Result<(), mysql::Error> {
    conn.query_drop(format!(
        "INSERT IGNORE INTO {table} \
         (`topic`,`kafka_partition`,`kafka_offset`,`message_key`,`payload`,`error`) \
         SELECT '', 0, 0, NULL, NULL, '' FROM DUAL WHERE 1 = 0"
    ))
}

/// Creates the dead-letter table when missing; one that is there must take
/// the sink's inserts (a dead letter that cannot be stored would hold its
/// batch back for good).
pub(crate) fn ensure_dlq_table(conn: &mut Conn, db: &str, table: &str) -> Result<(), DbError> {
    // Looked up first, as for the offsets table: a pre-created table is
    // how a user without the CREATE privilege runs.
    if table_exists(conn, db, table)? {
        let quoted = sql::qualified(db, table);
        let collation: Option<String> = conn
            .exec_first(
                "SELECT COLLATION_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = 'topic'",
                (db, table),
            )
            .map_err(query_err("reading the dead-letter table's topic column"))?;
        if collation.is_some_and(|c| !c.ends_with("_bin")) {
            if let Err(e) = conn.query_drop(sql::dlq_topic_binary(&quoted)) {
                log::warn!(
                    "cannot make {quoted}'s topic column compare byte for byte ({e}): dead \
                     letters of topics whose names differ only in case would collide there; \
                     run `{}` as a user who may",
                    sql::dlq_topic_binary(&quoted)
                );
            }
        }
        return probe_dlq_writes(conn, &quoted).map_err(query_err(
            "checking that the dead-letter table takes inserts",
        ));
    }
    conn.query_drop(sql::create_dlq_table(db, table))
        .map_err(query_err("creating the dead-letter table"))
}

/// Built unchecked: start-up already proved the server reachable, and a
/// writer that cannot get a connection retries like any failed batch.
pub fn pool(cfg: &MysqlConfig) -> Pool {
    pool_from(opts(cfg), cfg.pool_size, cfg.timeout)
}

/// A pool of `size` sessions made with `opts`, waiting at most `timeout`
/// for one.
pub fn pool_from(opts: OptsBuilder, size: u32, timeout: Duration) -> Pool {
    r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(0))
        .test_on_check_out(false)
        .connection_timeout(timeout)
        .build_unchecked(SessionManager(MySqlConnectionManager::new(opts)))
}
