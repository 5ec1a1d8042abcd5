//! The retry policy: which failures are worth retrying, and how long to wait.
//!
//! Every failed write is put in one of three classes, here and nowhere else:
//!
//! - **Transient**: the server or the connection is in trouble (gone away,
//!   too many connections, deadlock, lock wait timeout, read-only during a
//!   failover, query killed). The same statement will succeed later, so the
//!   batch is retried with backoff until it does (or the drain at shutdown
//!   runs out of time); its offsets stay uncommitted meanwhile.
//! - **Data**: the server refused these particular values (out of range, too
//!   long, wrong type, NULL where not allowed, a constraint). Retrying cannot
//!   help, so the batch is split to find the offending rows, which go to the
//!   dead-letter destination while every other row is written.
//!
//! - **Unknown**: a server error in neither list (a trigger's `SIGNAL`, an
//!   error of a newer server). It is retried like a transient one for
//!   [`UNKNOWN_ERROR_ATTEMPTS`] attempts, since dead-lettering a passing
//!   error would throw good rows away; after that it is taken for a data
//!   error, so that one row the server keeps refusing cannot stall the
//!   stream for ever.
//!
//! Client-side failures (I/O, timeouts, protocol) are transient: the server
//! may be fine and the network not. A packet too large for the server,
//! whichever side notices it, is data: the same statement will never fit.

use std::time::Duration;

use super::error::WriteError;
use crate::sql::BuildError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    Transient,
    Data,
    Unknown,
    /// The table is not as the plan has it: no row is at fault, the plan
    /// is (see [`SCHEMA_ERRORS`]).
    Schema,
}

/// Attempts at a batch that keeps failing with an unknown server error
/// before the error is taken for a data error.
pub(crate) const UNKNOWN_ERROR_ATTEMPTS: u32 = 8;

/// ER_NET_PACKET_TOO_LARGE: the statement exceeds `max_allowed_packet`.
const PACKET_TOO_LARGE: u16 = 1153;

/// MySQL/MariaDB server error codes that mean "these values are wrong".
const DATA_ERRORS: &[u16] = &[
    1048, // ER_BAD_NULL_ERROR: column cannot be null
    1153, // ER_NET_PACKET_TOO_LARGE: this statement never fits
    1062, // ER_DUP_ENTRY: a unique key other than the one being upserted
    1264, // ER_WARN_DATA_OUT_OF_RANGE
    1265, // WARN_DATA_TRUNCATED
    1292, // ER_TRUNCATED_WRONG_VALUE
    1300, // ER_INVALID_CHARACTER_STRING
    1365, // ER_DIVISION_BY_ZERO
    1366, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: incorrect integer/decimal value
    1367, // ER_ILLEGAL_VALUE_FOR_TYPE
    1406, // ER_DATA_TOO_LONG
    1411, // ER_WRONG_VALUE_FOR_TYPE
    1451, // ER_ROW_IS_REFERENCED_2: foreign key
    1452, // ER_NO_REFERENCED_ROW_2: foreign key
    1690, // ER_DATA_OUT_OF_RANGE: BIGINT value out of range
    3819, // ER_CHECK_CONSTRAINT_VIOLATED (MySQL)
    4025, // ER_CONSTRAINT_FAILED (MariaDB)
];

/// Server error codes that mean the table changed under the sink: a
/// column or the table itself gone, or a column added that takes no
/// default (the plan feeds every column that needs a value, so only a
/// change makes one go without).
const SCHEMA_ERRORS: &[u16] = &[
    1054, // ER_BAD_FIELD_ERROR: unknown column
    1146, // ER_NO_SUCH_TABLE
    1364, // ER_NO_DEFAULT_FOR_FIELD
];

/// Server error codes that are known to pass.
pub(crate) const TRANSIENT_ERRORS: &[u16] = &[
    1040, // ER_CON_COUNT_ERROR: too many connections
    1053, // ER_SERVER_SHUTDOWN
    1205, // ER_LOCK_WAIT_TIMEOUT
    1213, // ER_LOCK_DEADLOCK
    1290, // ER_OPTION_PREVENTS_STATEMENT: --read-only during failover
    1317, // ER_QUERY_INTERRUPTED
    1792, // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
    1836, // ER_READ_ONLY_MODE
    1927, // ER_CONNECTION_KILLED (MariaDB)
    // The server short of room whichever rows it is given: disk full
    // (1021), table full (1114), a failed commit (1180). (Errors that a
    // smaller statement may avoid, such as out of memory, a full lock table
    // or a statement time limit, stay unknown: after their attempts the
    // batch is split.)
    1021, 1114, 1180, 2006, // CR_SERVER_GONE_ERROR
    2013, // CR_SERVER_LOST
];

/// Classifies a server error by its code, falling back to its SQLSTATE:
/// class 22 is "data exception" and 23 "integrity constraint violation".
pub(crate) fn classify_server(code: u16, sqlstate: &str) -> ErrorClass {
    if SCHEMA_ERRORS.contains(&code) {
        return ErrorClass::Schema;
    }
    if DATA_ERRORS.contains(&code) {
        return ErrorClass::Data;
    }
    if TRANSIENT_ERRORS.contains(&code) {
        return ErrorClass::Transient;
    }
    // Deadlocks and serialization failures are class 40, so this cannot
    // catch them.
    if sqlstate.starts_with("22") || sqlstate.starts_with("23") {
        return ErrorClass::Data;
    }
    ErrorClass::Unknown
}

/// Whether the statement was too large for the server (or for the client's
/// idea of the server's limit): the budget must be read again.
pub(crate) fn is_packet_too_large(err: &WriteError) -> bool {
    matches!(
        err,
        WriteError::Mysql(mysql::Error::MySqlError(e)) if e.code == PACKET_TOO_LARGE
    ) || matches!(
        err,
        WriteError::Mysql(mysql::Error::DriverError(
            mysql::DriverError::PacketTooLarge
        ))
    )
}

/// Classifies any failure of a batch write.
pub(crate) fn classify(err: &WriteError) -> ErrorClass {
    match err {
        WriteError::Mysql(mysql::Error::MySqlError(e)) => classify_server(e.code, &e.state),
        _ if is_packet_too_large(err) => ErrorClass::Data,
        // I/O, protocol and driver errors: the connection is in trouble.
        WriteError::Mysql(_) => ErrorClass::Transient,
        // No connection could be had from the pool in time.
        WriteError::Pool(_) => ErrorClass::Transient,
        // The statements that did go through are undone: try it all again.
        WriteError::TransactionLost(_) => ErrorClass::Transient,
        // Retried (and said each time) until an operator restores it.
        WriteError::OwnershipMissing { .. } => ErrorClass::Transient,
        // The dead-letter topic is unreachable: wait for it.
        WriteError::Kafka(_) => ErrorClass::Transient,
        // One row alone does not fit in a statement: it never will.
        WriteError::Build(BuildError::RowTooLarge { .. }) => ErrorClass::Data,
        WriteError::PlanBuild(_) => ErrorClass::Data,
    }
}

/// Capped exponential backoff with "equal jitter": half the delay is fixed,
/// the other half random, so writers retrying together spread out but never
/// retry immediately.
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        Backoff {
            next: initial,
            max,
            rng: (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos) | 1,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        // xorshift64: plenty for jitter, no dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let base = self.next;
        let half = base / 2;
        let jitter = half.mul_f64((self.rng % 1_000_000) as f64 / 1_000_000.0);
        self.next = (base * 2).min(self.max);
        half + jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_codes() {
        use ErrorClass::*;
        // A changed table is the plan's problem, whatever SQLSTATE says.
        for (code, state) in [(1054, "42S22"), (1146, "42S02"), (1364, "HY000")] {
            assert_eq!(classify_server(code, state), Schema, "{code}");
        }
        for code in [
            1213, 1205, 1040, 1053, 1290, 1317, 1836, 1927, 2006, 2013, 1114, 1021,
        ] {
            assert_eq!(classify_server(code, "HY000"), Transient, "{code}");
        }
        for (code, state) in [
            (1264, "22003"),
            (1406, "22001"),
            (1366, "HY000"),
            (1292, "22007"),
            (1048, "23000"),
            (1452, "23000"),
            (4025, "23000"),
            (3819, "HY000"),
        ] {
            assert_eq!(classify_server(code, state), Data, "{code}");
        }
        // Deadlock's SQLSTATE is 40001, never mistaken for data.
        assert_eq!(classify_server(1213, "40001"), Transient);
        // Unknown codes: by SQLSTATE class, else unknown (a trigger's
        // SIGNAL among them).
        assert_eq!(classify_server(9999, "22012"), Data);
        assert_eq!(classify_server(9999, "23505"), Data);
        assert_eq!(classify_server(9999, "HY000"), Unknown);
        assert_eq!(classify_server(1644, "45000"), Unknown);
        assert_eq!(classify_server(1153, "08S01"), Data);
    }

    #[test]
    fn write_errors() {
        let io = WriteError::Mysql(mysql::Error::IoError(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )));
        assert_eq!(classify(&io), ErrorClass::Transient);
        let big = WriteError::Build(BuildError::RowTooLarge {
            needed: 10,
            limit: 5,
        });
        assert_eq!(classify(&big), ErrorClass::Data);
        let too_large = WriteError::Mysql(mysql::Error::DriverError(
            mysql::DriverError::PacketTooLarge,
        ));
        assert!(is_packet_too_large(&too_large));
        assert_eq!(classify(&too_large), ErrorClass::Data);
        assert!(!is_packet_too_large(&io));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000), 1);
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[3] >= Duration::from_millis(400));
        assert!(d.iter().all(|x| *x <= Duration::from_millis(1000)));
    }
}
