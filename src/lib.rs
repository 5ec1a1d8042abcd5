//! kafka-mysql-sink: drains JSON order events from Kafka into MySQL.
//!
//! Data flows one way, top to bottom: the consumer thread ([`source`](mod@source))
//! reads messages in batches, decodes them ([`decode`](mod@decode)) and routes rows
//! by key ([`route`](mod@route), as the key column compares them:
//! [`collation`](mod@collation)) into bounded channels; writer threads
//! ([`write`](mod@write)) batch them into multi-row upserts ([`sql`](mod@sql)) over a
//! connection pool ([`db`](mod@db)) and acknowledge durable offsets back to the
//! consumer, whose tracker ([`offsets`](mod@offsets)) commits each partition's
//! contiguous done prefix. The vocabulary every stage shares lives in
//! [`types`](mod@types), below all of them. [`pipeline`] wires one run together.
//!
//! The public modules are what the binary needs; [`internals`] re-exports
//! the pieces the project's own benchmarks, examples and integration tests
//! drive directly. Nothing here is a stable API.
#![warn(unreachable_pub)]

pub mod check;
pub mod config;
pub mod malloc;
pub mod metrics;
pub mod offsets_command;
pub mod pipeline;
pub mod progress;
pub mod shutdown;

mod collation;
mod convert;
mod db;
mod decode;
mod describe;
mod fence;
mod http;
mod log_json;
mod offsets;
mod plan;
mod produce;
mod route;
mod source;
mod sql;
mod table;
mod targets;
mod types;
mod write;

/// The pieces the project's own benchmarks, examples and integration tests
/// drive directly. Not a stable API.
#[doc(hidden)]
pub mod internals {
    pub use crate::collation::KeyCollation;
    pub use crate::convert::{sql_literal, ConvertError};
    pub use crate::db::{
        connect_with_retry, ensure_table, opts, pool, pool_from, server_info, DbError, Pool,
        ServerInfo,
    };
    pub use crate::decode::{
        Cell, DecodeError, Decoder, Meta, Num, PlanDecoder, PlanRow, Row, RowError,
    };
    pub use crate::describe::describe_table;
    pub use crate::fence::Standing;
    pub use crate::offsets::OffsetTracker;
    pub use crate::pipeline::{spawn_writers, WriterTarget};
    pub use crate::produce::send;
    pub use crate::route::{inbox, RouteError, Router, Routing};
    pub use crate::source::client_config;
    pub use crate::sql::{
        create_dlq_table, qualified, AsPlanRow, Dialect, PlanBuildError, PlanShape, PlanStatements,
        UpsertBuilder, WriteMode,
    };
    pub use crate::table::{Column, TableDesc, TypeClass, UniqueKey};
    pub use crate::types::{Coord, DeadLetter, Envelope, Op, Part, Topic};
    pub use crate::write::{
        BatchSink, Claim, DlqTarget, MysqlSink, WriteError, Writer, WriterSettings,
    };
}
