//! New topics for `topic_pattern` routes.
//!
//! The consumer subscribes to the topics its routes take by name, each
//! with a target planned against its table at start-up: a pattern is
//! expanded against the cluster's topics then. Every `kafka.topic_refresh_ms`
//! the cluster's topics are listed again; a new one a pattern takes ends
//! the round (a drain, as on a signal), and the pipeline starts the next
//! with it planned and subscribed. A new topic is rare, and a drain is the
//! path every delivery guarantee is already proven on.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use crate::config::Config;

/// Bound on listing the cluster's topics.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct TopicWatch {
    config: Config,
    /// Topics read now, and those a pattern matched that were refused.
    known: HashSet<String>,
    every: Duration,
    last: Instant,
}

impl TopicWatch {
    /// A watch for `config`'s patterns, knowing `known`; `None` without a
    /// pattern.
    pub(crate) fn new(config: &Config, known: impl IntoIterator<Item = String>) -> Option<Self> {
        config
            .routes
            .iter()
            .any(|r| r.topic_pattern.is_some())
            .then(|| TopicWatch {
                config: config.clone(),
                known: known.into_iter().collect(),
                every: config.kafka.topic_refresh,
                last: Instant::now(),
            })
    }

    /// Topics a pattern takes that are not known yet, once a refresh is
    /// due (none otherwise, or when the list cannot be had: tried again at
    /// the next refresh).
    pub(crate) fn new_topics<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Vec<String> {
        if self.last.elapsed() < self.every {
            return Vec::new();
        }
        self.last = Instant::now();
        let metadata = match consumer.fetch_metadata(None, LIST_TIMEOUT) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("cannot list the cluster's topics for the routes' patterns: {e}");
                return Vec::new();
            }
        };
        metadata
            .topics()
            .iter()
            .map(|t| t.name())
            .filter(|name| !self.known.contains(*name))
            .filter(|name| {
                self.config
                    .routes
                    .iter()
                    .any(|r| self.config.pattern_takes(r, name))
            })
            .map(str::to_owned)
            .collect()
    }
}
