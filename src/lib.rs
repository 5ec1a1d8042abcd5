//! kafka-mysql-sink: drains JSON order events from Kafka into MySQL.
//!
//! Data flows one way: the consumer thread ([`source`]) reads messages in
//! batches ([`fetch`]), decodes them ([`decode`]) and routes rows by key
//! ([`route`]) into bounded channels; writer threads ([`write`](mod@write)) batch them
//! into multi-row upserts ([`sql`]) over a
//! connection pool ([`db`]) and acknowledge durable offsets back to the
//! consumer, whose tracker ([`offsets`]) commits each partition's contiguous
//! done prefix. [`pipeline`] wires one run together.

pub mod check;
pub mod config;
pub mod db;
pub mod decode;
pub mod dlq;
pub mod fetch;
pub mod gen;
pub mod http;
pub mod malloc;
pub mod metrics;
pub mod offsets;
pub mod pipeline;
pub mod produce;
pub mod progress;
pub mod retry;
pub mod route;
pub mod shutdown;
pub mod source;
pub mod sql;
pub mod write;
