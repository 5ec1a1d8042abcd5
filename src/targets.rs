//! The route targets of a run: one per `[[routes]]` entry and topic, each
//! with what every stage needs of it, as plain data.
//!
//! Like [`types`](crate::types) it sits below the stages: the pipeline
//! builds the registry once at start-up, the consumer makes a decoder of
//! each target's plan, the router weighs each target's keys, writers make
//! statements of each target's shape. An [`Envelope`](crate::types::Envelope)
//! names its target by index, so no stage asks another which is which.

use crate::collation::KeyCollation;
use crate::plan::Plan;
use crate::sql::PlanShape;

/// Where a target's dead letters go: the global `dead_letter.mode` with
/// the names defaulting per route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeadLetters {
    /// Rows in this table of `mysql.database` (unquoted).
    Table(String),
    /// Messages on this topic.
    Topic(String),
    /// Logged and counted only.
    Skip,
}

/// One route × topic.
#[derive(Debug, Clone)]
pub(crate) struct RouteTarget {
    pub(crate) topic: String,
    /// The table's name (unquoted), as metrics label it.
    pub(crate) table: String,
    /// The compiled plan, of which the consumer makes its decoder.
    pub(crate) plan: Plan,
    /// The rows' columns and key, of which writers make statements.
    pub(crate) shape: PlanShape,
    pub(crate) delete_on_tombstone: bool,
    pub(crate) dead_letters: DeadLetters,
    /// Per key column (in `shape.key` order): how a text column compares,
    /// which routing by key follows; `None` for other types, whose
    /// literals are routed by their bytes.
    pub(crate) key_collations: Vec<Option<KeyCollation>>,
}

/// Every target of a run, indexed by `Envelope::target`. Empty on the
/// orders path (no `[[routes]]`).
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteTargets(pub(crate) Vec<RouteTarget>);

impl RouteTargets {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn get(&self, index: u16) -> Option<&RouteTarget> {
        self.0.get(usize::from(index))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &RouteTarget> {
        self.0.iter()
    }
}
