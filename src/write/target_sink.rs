//! What a writer keeps of one route target: its statements, its
//! dead-letter destination, and what update mode did not find.

use super::dlq::DlqTarget;
use crate::sql::PlanStatements;

/// What a writer keeps of one route target.
pub(crate) struct TargetSink {
    pub(crate) statements: PlanStatements,
    pub(crate) dlq: DlqTarget,
    /// The table's name, as metrics label it.
    pub(crate) table: String,
    /// Update mode: rows not found by the writes of the current attempt.
    pub(super) not_found: u64,
}

impl TargetSink {
    pub(crate) fn new(statements: PlanStatements, dlq: DlqTarget, table: String) -> TargetSink {
        TargetSink {
            statements,
            dlq,
            table,
            not_found: 0,
        }
    }
}
