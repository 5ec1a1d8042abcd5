//! The statements a writer's session runs around its batches: the
//! transaction, its liveness check, and ending a session given up on.

/// The savepoint every batch transaction sets after its ownership check.
const ALIVE: &str = "`kms_alive`";

/// Opens a batch's transaction, runs `ownership_read` (a locking read,
/// nothing written) and sets the savepoint by which a later error can tell
/// whether the transaction survived it: one packet, one round trip.
pub(crate) fn begin_checked(ownership_read: &str) -> String {
    format!("START TRANSACTION; {ownership_read}; SAVEPOINT {ALIVE}")
}

/// Fails (1305) when the transaction is gone; otherwise sets the savepoint
/// again for the next check.
pub(crate) fn check_alive() -> String {
    format!("RELEASE SAVEPOINT {ALIVE}; SAVEPOINT {ALIVE}")
}

pub(crate) const COMMIT: &str = "COMMIT";
pub(crate) const ROLLBACK: &str = "ROLLBACK";
pub(crate) const MAX_ALLOWED_PACKET: &str = "SELECT @@max_allowed_packet";

/// Ends another session, and with it its transaction and locks.
pub(crate) fn kill_connection(id: u32) -> String {
    format!("KILL CONNECTION {id}")
}

/// Set before a write that takes several statements and must not be
/// applied in part (plain inserts: a retry of the part would be refused as
/// duplicates of itself).
pub(crate) const SAVE_WRITE: &str = "SAVEPOINT `kms_write`";
pub(crate) const UNDO_WRITE: &str = "ROLLBACK TO SAVEPOINT `kms_write`";
