//! Reading messages from librdkafka many at a time.
//!
//! rdkafka's `BaseConsumer::poll` hands out one message per call, and each
//! call pays for an event wrapper, an `Arc`, a queue lock and three clock
//! reads; profiles of a backfill put that at about a tenth of the sink's CPU.
//! librdkafka can return a whole array of messages in one call
//! (`rd_kafka_consume_batch_queue`), but not from the consumer queue that
//! rdkafka uses: that queue also carries the rebalance events, which the
//! batch call would serve itself (and, with no native rebalance callback set,
//! answer by unassigning everything).
//!
//! So the messages get a queue of their own. Every partition's fetch queue
//! is forwarded to a [`FetchQueue`] when the partition is assigned, before
//! fetching starts; the consumer queue keeps the events, and `poll` still
//! serves them. librdkafka's fetch-stop path clears a partition's forwarding
//! (`rd_kafka_toppar_fetch_stop`) and, once the application has forwarded a
//! partition, never forwards it to the consumer queue itself again; so
//! [`FetchQueue::attach`] runs on every assignment (forwarding a partition
//! that is still forwarded is harmless). A partition that could not be
//! attached delivers to the consumer queue as before, where `poll` returns
//! its messages: slower, never lost, and logged once.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

/// An application queue that the assigned partitions' messages are
/// forwarded to.
///
/// librdkafka requires an application queue, and every message taken from
/// it, to be destroyed before the client. The queue therefore holds the
/// consumer (as rdkafka's own `PartitionQueue` does), and every [`Batch`]
/// holds it too: whatever order safe code drops things in, the client goes
/// last.
pub(crate) struct FetchQueue<C: ConsumerContext + 'static> {
    queue: NonNull<rd::rd_kafka_queue_t>,
    consumer: Arc<BaseConsumer<C>>,
}

// SAFETY: librdkafka queues are locked internally and may be used from any
// thread; the handle is only destroyed by `Drop`, which takes `&mut self`.
// The consumer is Send + Sync on its own.
unsafe impl<C: ConsumerContext> Send for FetchQueue<C> {}
unsafe impl<C: ConsumerContext> Sync for FetchQueue<C> {}

impl<C: ConsumerContext> FetchQueue<C> {
    /// A new, empty queue on the consumer's client; `None` if librdkafka
    /// cannot allocate one.
    pub(crate) fn new(consumer: Arc<BaseConsumer<C>>) -> Option<FetchQueue<C>> {
        // SAFETY: the client pointer is valid while `consumer` lives, and the
        // queue keeps `consumer` alive until after it is destroyed.
        let ptr = unsafe { rd::rd_kafka_queue_new(consumer.client().native_ptr()) };
        NonNull::new(ptr).map(|queue| FetchQueue { queue, consumer })
    }

    /// An empty batch of up to `capacity` messages, to be filled by
    /// [`FetchQueue::read`].
    pub(crate) fn batch(&self, capacity: usize) -> Batch<C> {
        Batch {
            messages: Vec::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
            _client: self.consumer.clone(),
        }
    }

    /// Sends `partition`'s messages to this queue from now on. Call it for
    /// every assigned partition before librdkafka starts fetching it (that
    /// is, in the pre-assignment callback). Returns false if librdkafka has
    /// no such partition handle, in which case its messages keep arriving
    /// through `poll`.
    pub(crate) fn attach(&self, topic: &str, partition: i32) -> bool {
        let Ok(topic) = CString::new(topic) else {
            return false;
        };
        // SAFETY: valid client pointer and NUL-terminated topic; the returned
        // handle is ours to destroy, and forwarding keeps its own reference
        // to this queue, so destroying the handle right away is correct.
        unsafe {
            let part = rd::rd_kafka_queue_get_partition(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
            );
            if part.is_null() {
                return false;
            }
            rd::rd_kafka_queue_forward(part, self.queue.as_ptr());
            rd::rd_kafka_queue_destroy(part);
        }
        true
    }

    /// Replaces `batch`'s messages with up to its capacity of new ones:
    /// whatever is queued now, or, if nothing is, whatever arrives first
    /// within `wait` together with what is queued by then.
    ///
    /// librdkafka's batch call waits until the array is *full* or the time
    /// is up, which would hold back a trickle of messages for the whole wait;
    /// so it is asked for what is there without waiting, and only when that
    /// is nothing does it wait, for one message.
    pub(crate) fn read(&self, batch: &mut Batch<C>, wait: Duration) {
        batch.clear();
        self.fill(batch, usize::MAX, 0);
        if batch.is_empty() && !wait.is_zero() {
            let ms = wait.as_millis().min(i32::MAX as u128) as i32;
            self.fill(batch, 1, ms);
            if !batch.is_empty() {
                self.fill(batch, usize::MAX, 0);
            }
        }
    }

    /// Appends up to `n` messages (as many as fit), waiting up to
    /// `timeout_ms` for them.
    fn fill(&self, batch: &mut Batch<C>, n: usize, timeout_ms: i32) {
        let have = batch.messages.len();
        let n = n.min(batch.capacity - have);
        if n == 0 {
            return;
        }
        batch.messages.reserve(n);
        // SAFETY: the spare capacity holds at least `n` pointers; librdkafka
        // writes at most `n` of them and returns how many (or -1 on error,
        // with none written). Each message written is owned by the batch from
        // here on and destroyed exactly once, in `Batch::clear`.
        unsafe {
            let got = rd::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout_ms,
                batch.messages.as_mut_ptr().add(have),
                n,
            );
            if got > 0 {
                batch.messages.set_len(have + got as usize);
            }
        }
    }
}

impl<C: ConsumerContext> Drop for FetchQueue<C> {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_queue_new, destroyed only here, while
        // `self.consumer` (dropped after this) keeps the client alive.
        // Partitions still forwarding to it hold their own reference, and
        // librdkafka drops what they send to a destroyed (disabled) queue.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) }
    }
}

/// Messages read by one [`FetchQueue::read`], owned until the next read (or
/// until the batch is dropped). The batch holds the consumer, so its
/// messages are always destroyed before the client.
pub(crate) struct Batch<C: ConsumerContext + 'static> {
    messages: Vec<*mut rd::rd_kafka_message_t>,
    capacity: usize,
    _client: Arc<BaseConsumer<C>>,
}

// SAFETY: librdkafka messages may be read and destroyed on any thread.
unsafe impl<C: ConsumerContext> Send for Batch<C> {}

impl<C: ConsumerContext> Batch<C> {
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub(crate) fn get(&self, i: usize) -> Option<Fetched<'_>> {
        // SAFETY: every pointer in `messages` came from librdkafka and is
        // live until `clear`, which needs `&mut self`.
        self.messages.get(i).map(|&m| Fetched(unsafe { &*m }))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Fetched<'_>> {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Gives the messages back to librdkafka.
    pub(crate) fn clear(&mut self) {
        for m in self.messages.drain(..) {
            // SAFETY: each message is destroyed once; `drain` forgets it.
            unsafe { rd::rd_kafka_message_destroy(m) }
        }
    }
}

impl<C: ConsumerContext> Drop for Batch<C> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One message of a [`Batch`].
#[derive(Clone, Copy)]
pub(crate) struct Fetched<'a>(&'a rd::rd_kafka_message_t);

impl<'a> Fetched<'a> {
    pub(crate) fn partition(&self) -> i32 {
        self.0.partition
    }

    /// The name of the message's topic; empty if librdkafka gave none.
    pub(crate) fn topic_name(&self) -> &'a str {
        if self.0.rkt.is_null() {
            return "";
        }
        // SAFETY: `rkt` is the message's topic handle, which the message
        // holds a reference on; its name is a NUL-terminated string owned
        // by the handle, alive as long as the message.
        let name = unsafe { std::ffi::CStr::from_ptr(rd::rd_kafka_topic_name(self.0.rkt)) };
        // Kafka topic names are ASCII.
        std::str::from_utf8(name.to_bytes()).unwrap_or_default()
    }

    pub(crate) fn offset(&self) -> i64 {
        self.0.offset
    }

    /// Why this is not a message (a fetch error librdkafka reports in its
    /// place), if it is not.
    pub(crate) fn error(&self) -> Option<rdkafka::error::RDKafkaErrorCode> {
        let err = self.0.err;
        (err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| err.into())
    }

    /// The message's timestamp (create or log-append time, whichever the
    /// topic keeps) in milliseconds since the epoch, or `NO_TIMESTAMP`.
    pub(crate) fn timestamp_ms(&self) -> i64 {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is live (see `Batch::get`) and `kind` is
        // writable; librdkafka only reads the message's fields.
        let ts = unsafe { rd::rd_kafka_message_timestamp(self.0, &mut kind) };
        if kind == rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE || ts < 0 {
            crate::types::NO_TIMESTAMP
        } else {
            ts
        }
    }

    pub(crate) fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: librdkafka guarantees `key_len` bytes at `key` when it is
        // not null, alive as long as the message.
        (!self.0.key.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(self.0.key as *const u8, self.0.key_len) })
    }

    /// Appends the message's headers to `out`, in order: name (headers
    /// whose name is not UTF-8 are left out) and value (`None` for a null
    /// one).
    pub(crate) fn headers(&self, out: &mut Vec<(&'a str, Option<&'a [u8]>)>) {
        let mut hdrs: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: the message is live (see `Batch::get`); librdkafka parses
        // its headers into a list the message owns, alive as long as it.
        let err = unsafe { rd::rd_kafka_message_headers(self.0, &mut hdrs) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
            return;
        }
        for idx in 0.. {
            let mut name: *const std::ffi::c_char = std::ptr::null();
            let mut value: *const std::ffi::c_void = std::ptr::null();
            let mut size = 0usize;
            // SAFETY: `hdrs` is the message's list; the out-pointers are
            // writable. On success `name` is a NUL-terminated string and
            // `value` (when not null) `size` bytes, both owned by the list.
            let err =
                unsafe { rd::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size) };
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                return;
            }
            // SAFETY: as above.
            let name = unsafe { std::ffi::CStr::from_ptr(name) };
            let Ok(name) = std::str::from_utf8(name.to_bytes()) else {
                continue;
            };
            let value = (!value.is_null())
                // SAFETY: as above.
                .then(|| unsafe { std::slice::from_raw_parts(value as *const u8, size) });
            out.push((name, value));
        }
    }

    pub(crate) fn payload(&self) -> Option<&'a [u8]> {
        // SAFETY: as for `key`.
        (!self.0.payload.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(self.0.payload as *const u8, self.0.len) })
    }
}
