//! Why a write did not happen, as the writer's parts report it.

use crate::sql::{BuildError, PlanBuildError};

/// Why a write did not happen. [`super::retry::classify`] decides what each
/// one means for the batch.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no MySQL connection available: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("MySQL refused the statement: {0}")]
    Mysql(#[from] mysql::Error),
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A route row's statement could not be built (too large, or a key
    /// cell missing): the row's fault, never the server's.
    #[error(transparent)]
    PlanBuild(#[from] PlanBuildError),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("the batch's transaction was lost ({0}); it is retried whole")]
    TransactionLost(#[source] Box<WriteError>),
    #[error(
        "partition {partition} has no row in {table}: it was removed while the sink held the \
         partition; restart the sink so that it claims the partition again"
    )]
    OwnershipMissing {
        partition: crate::types::Part,
        table: String,
    },
}
