//! Stopping: SIGINT/SIGTERM ask for a drain; a second signal exits at once.
//!
//! The signal handler only flips an atomic flag (the one thing that is safe
//! in a handler); the consumer notices it between polls and starts the drain.
//! Writers read the drain deadline to give up on a batch that keeps failing,
//! leaving its offsets uncommitted so it is read again on the next start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Exit status when a second signal cuts the drain short (128 + SIGINT).
pub const FORCED_EXIT_CODE: i32 = 130;

#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Set by SIGINT/SIGTERM.
    signalled: Arc<AtomicBool>,
    /// Set by the program itself (tests, until-caught-up): not a signal, so
    /// the next real signal is a first one, not a second.
    requested: Arc<AtomicBool>,
    /// A round's: what the program requested of the whole run, which
    /// stops the round too.
    parent: Option<Arc<AtomicBool>>,
    /// Set by a writer whose table changed under its plan: the round ends,
    /// and the next describes the tables again.
    replan: AtomicBool,
    /// Set when rounds replanned for a changed table have kept failing the
    /// same way: such errors are then retried and isolated as unknown ones.
    replans_exhausted: AtomicBool,
    drain_started: OnceLock<Instant>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Routes SIGINT and SIGTERM to this handle. The first one requests a
    /// drain; the next one exits the process immediately.
    pub fn install_signal_handlers(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as it was before this
            // signal: exits only when a drain was already requested.
            flag::register_conditional_shutdown(
                sig,
                FORCED_EXIT_CODE,
                self.inner.signalled.clone(),
            )?;
            flag::register(sig, self.inner.signalled.clone())?;
        }
        Ok(())
    }

    /// Asks for a drain (what a signal does; also used by tests and by the
    /// run-until-caught-up mode).
    pub fn request(&self) {
        self.inner.requested.store(true, Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
            || self.inner.signalled.load(Ordering::SeqCst)
            || self
                .inner
                .parent
                .as_ref()
                .is_some_and(|p| p.load(Ordering::SeqCst))
    }

    /// A handle for one round of a run that may be followed by another:
    /// signals reach it, but what the program requests of it, and its
    /// drain, are its own.
    pub fn round(&self) -> Shutdown {
        Shutdown {
            inner: Arc::new(Inner {
                signalled: self.inner.signalled.clone(),
                requested: Arc::new(AtomicBool::new(false)),
                parent: Some(self.inner.requested.clone()),
                replan: AtomicBool::new(false),
                replans_exhausted: AtomicBool::new(false),
                drain_started: OnceLock::new(),
            }),
        }
    }

    /// Ends the round for a plan built again: a drain, as [`Self::request`].
    pub fn request_replan(&self) {
        self.inner.replan.store(true, Ordering::SeqCst);
        self.request();
    }

    pub fn replan_requested(&self) -> bool {
        self.inner.replan.load(Ordering::SeqCst)
    }

    /// Whether this round takes a changed table for an error like any
    /// other (see [`Inner::replans_exhausted`]).
    pub fn replans_exhausted(&self) -> bool {
        self.inner.replans_exhausted.load(Ordering::SeqCst)
    }

    pub(crate) fn exhaust_replans(&self) {
        self.inner.replans_exhausted.store(true, Ordering::SeqCst);
    }

    /// Marks the start of the drain; the first call wins.
    pub fn start_drain(&self) {
        let _ = self.inner.drain_started.set(Instant::now());
    }

    /// Whether a drain started more than `timeout` ago.
    pub fn drain_expired(&self, timeout: Duration) -> bool {
        self.drain_left(timeout).is_some_and(|left| left.is_zero())
    }

    /// What is left of a drain of at most `timeout`; `None` before the
    /// drain started.
    pub fn drain_left(&self, timeout: Duration) -> Option<Duration> {
        self.inner
            .drain_started
            .get()
            .map(|t| timeout.saturating_sub(t.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_stops_with_its_run_but_its_own_stop_is_its_own() {
        let run = Shutdown::new();
        let round = run.round();
        round.request_replan();
        assert!(round.is_requested() && round.replan_requested());
        assert!(!run.is_requested(), "a round's stop ends only the round");
        let next = run.round();
        assert!(!next.is_requested() && !next.replan_requested());
        run.request();
        assert!(next.is_requested(), "stopping the run stops its round");
    }

    #[test]
    fn a_stop_the_program_asked_for_leaves_the_next_signal_a_first_one() {
        let shutdown = Shutdown::new();
        shutdown.install_signal_handlers().unwrap();
        // What --until-caught-up does once the backlog is done.
        shutdown.request();
        shutdown.start_drain();
        // A SIGTERM during that drain asks for a drain (already running);
        // taken for a second signal, it would end this process with 130.
        // SAFETY: raise only delivers a signal to this thread, whose
        // handlers signal-hook installed above.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        assert!(shutdown.is_requested());
        assert!(!shutdown.drain_expired(Duration::from_secs(60)));
    }
}
