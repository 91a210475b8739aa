//! Which server the next connection attempt dials, and what it waits for first: the failover
//! policy among several servers of one cluster, as a pure state machine (no clock, no I/O, no
//! randomness: the driver says how each attempt ended and turns a [`Wait`] into a delay).
//!
//! - The first attempt goes to the first server.
//! - A joined session that is lost goes on to the next server at once: the servers share rooms,
//!   so any of them serves us, and the one just lost is tried last. Only a session that keeps
//!   failing soon after its join (the third short one in a row, see [`STABLE_SESSION`]) waits, so
//!   that a server that drops every client right after the join is not hammered.
//! - An attempt that fails (no connection, no answer, a refusal other than the ones below) goes on
//!   to the next server at once; once every server failed in turn (a round), the client waits
//!   the backoff, which grows with each round failed in a row.
//! - `id_taken` is asked again of the same server soon ([`Wait::Soon`]), up to [`ID_TAKEN_RETRIES`]
//!   times in a row: right after a server dies, the cluster still holds our id for the dead
//!   server until its claim expires, and waiting the backoff would leave us out for nothing.
//! - A server that refuses us for a reason of its own (it does not answer to the host our proof
//!   names, it speaks an older protocol, it wants a proof) is taken out of the rotation; when no
//!   server is left, the client gives up.

use std::time::Duration;

/// `id_taken` answers in a row that are asked again soon; more count as failed attempts.
pub(crate) const ID_TAKEN_RETRIES: u32 = 20;

/// A joined session that lasts less than this counts as short: the third short one in a row,
/// and each one after, waits a backoff before the next server.
pub(crate) const STABLE_SESSION: Duration = Duration::from_secs(10);

/// What the next attempt waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Nothing: dial at once.
    Now,
    /// A short pause (the driver's `ID_TAKEN_RETRY`, jittered), for a server that said `id_taken`.
    Soon,
    /// The configuration's backoff for this many failures in a row (1-based).
    Backoff(u32),
}

/// The next attempt: the index of the server to dial, and what to wait for first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Next {
    pub(crate) server: usize,
    pub(crate) wait: Wait,
}

/// The failover state of one client (see the module's doc).
#[derive(Debug)]
pub(crate) struct Rotation {
    /// Servers still in the rotation, by index.
    usable: Vec<bool>,
    /// The server of the current (or last) attempt.
    current: usize,
    /// Attempts failed since the last join or since the last whole round failed.
    failed_in_round: usize,
    /// Whole rounds failed in a row (the backoff's count).
    rounds_failed: u32,
    /// `id_taken` answers in a row.
    id_taken: u32,
    /// Joined sessions in a row shorter than [`STABLE_SESSION`].
    short_sessions: u32,
}

impl Rotation {
    /// A rotation over `servers` servers, all usable.
    pub(crate) fn new(servers: usize) -> Self {
        Self {
            usable: vec![true; servers],
            current: 0,
            failed_in_round: 0,
            rounds_failed: 0,
            id_taken: 0,
            short_sessions: 0,
        }
    }

    /// Takes server `index` out before the first attempt (its URL cannot be dialled).
    pub(crate) fn remove(&mut self, index: usize) {
        if let Some(usable) = self.usable.get_mut(index) {
            *usable = false;
        }
    }

    /// The first attempt's server, `None` when no server is usable.
    pub(crate) fn first(&mut self) -> Option<usize> {
        let first = self.usable.iter().position(|u| *u)?;
        self.current = first;
        Some(first)
    }

    /// The joined session on the current server was lost after `session`.
    pub(crate) fn lost(&mut self, session: Duration) -> Next {
        self.failed_in_round = 0;
        self.rounds_failed = 0;
        self.id_taken = 0;
        self.short_sessions = if session < STABLE_SESSION {
            self.short_sessions.saturating_add(1)
        } else {
            0
        };
        let wait = match self.short_sessions {
            0..=2 => Wait::Now,
            short => Wait::Backoff(short - 2),
        };
        self.advance(wait)
    }

    /// The attempt on the current server failed (it never joined).
    pub(crate) fn failed(&mut self) -> Next {
        self.failed_in_round += 1;
        let wait = self.round_wait();
        self.advance(wait)
    }

    /// The current server answered `id_taken`.
    pub(crate) fn id_taken(&mut self) -> Next {
        self.id_taken = self.id_taken.saturating_add(1);
        if self.id_taken > ID_TAKEN_RETRIES {
            return self.failed();
        }
        Next {
            server: self.current,
            wait: Wait::Soon,
        }
    }

    /// The current server refused us for a reason of its own: it leaves the rotation. `None`
    /// when no server is left.
    pub(crate) fn refused(&mut self) -> Option<Next> {
        self.remove(self.current);
        if self.usable_count() == 0 {
            return None;
        }
        let wait = self.round_wait();
        Some(self.advance(wait))
    }

    fn usable_count(&self) -> usize {
        self.usable.iter().filter(|u| **u).count()
    }

    /// The backoff once every usable server failed since the round began (a new round begins),
    /// else nothing.
    fn round_wait(&mut self) -> Wait {
        if self.failed_in_round < self.usable_count() {
            return Wait::Now;
        }
        self.failed_in_round = 0;
        self.rounds_failed = self.rounds_failed.saturating_add(1);
        Wait::Backoff(self.rounds_failed)
    }

    /// Moves on to the next usable server after the current one (the current one itself when it
    /// is the only one).
    fn advance(&mut self, wait: Wait) -> Next {
        let n = self.usable.len();
        if let Some(next) = (1..=n)
            .map(|k| (self.current + k) % n)
            .find(|i| self.usable[*i])
        {
            self.current = next;
        }
        Next {
            server: self.current,
            wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    fn next(server: usize, wait: Wait) -> Next {
        Next { server, wait }
    }

    #[test]
    fn failed_attempts_rotate_at_once_and_back_off_after_each_whole_round() {
        let mut r = Rotation::new(3);
        assert_eq!(r.first(), Some(0));
        assert_eq!(r.failed(), next(1, Wait::Now));
        assert_eq!(r.failed(), next(2, Wait::Now));
        assert_eq!(r.failed(), next(0, Wait::Backoff(1)));
        assert_eq!(r.failed(), next(1, Wait::Now));
        assert_eq!(r.failed(), next(2, Wait::Now));
        assert_eq!(r.failed(), next(0, Wait::Backoff(2)));
    }

    #[test]
    fn one_server_backs_off_after_each_failure_as_before() {
        let mut r = Rotation::new(1);
        assert_eq!(r.first(), Some(0));
        for round in 1..5 {
            assert_eq!(r.failed(), next(0, Wait::Backoff(round)));
        }
        // A lost session is retried at once; a restarting server then fails a round.
        assert_eq!(r.lost(LONG), next(0, Wait::Now));
        assert_eq!(r.failed(), next(0, Wait::Backoff(1)));
    }

    #[test]
    fn a_lost_session_moves_to_the_next_server_at_once_and_tries_the_lost_one_last() {
        let mut r = Rotation::new(3);
        assert_eq!(r.first(), Some(0));
        assert_eq!(r.failed(), next(1, Wait::Now));
        // Joined on 1, which dies: 2 next, at once; the round ends with 1.
        assert_eq!(r.lost(LONG), next(2, Wait::Now));
        assert_eq!(r.failed(), next(0, Wait::Now));
        assert_eq!(r.failed(), next(1, Wait::Now));
        assert_eq!(r.failed(), next(2, Wait::Backoff(1)));
        // A join resets the backoff.
        assert_eq!(r.lost(LONG), next(0, Wait::Now));
        assert_eq!(r.failed(), next(1, Wait::Now));
    }

    #[test]
    fn sessions_lost_soon_after_their_join_back_off_from_the_third_in_a_row() {
        let mut r = Rotation::new(2);
        assert_eq!(r.first(), Some(0));
        let short = STABLE_SESSION / 2;
        assert_eq!(r.lost(short), next(1, Wait::Now));
        assert_eq!(r.lost(short), next(0, Wait::Now));
        assert_eq!(r.lost(short), next(1, Wait::Backoff(1)));
        assert_eq!(r.lost(short), next(0, Wait::Backoff(2)));
        // A stable session ends the streak.
        assert_eq!(r.lost(STABLE_SESSION), next(1, Wait::Now));
        assert_eq!(r.lost(short), next(0, Wait::Now));
    }

    #[test]
    fn id_taken_is_asked_again_of_the_same_server_soon_for_a_while() {
        let mut r = Rotation::new(2);
        assert_eq!(r.first(), Some(0));
        assert_eq!(r.lost(LONG), next(1, Wait::Now));
        for _ in 0..ID_TAKEN_RETRIES {
            assert_eq!(r.id_taken(), next(1, Wait::Soon));
        }
        // Then it counts as a failed attempt: the rotation goes on.
        assert_eq!(r.id_taken(), next(0, Wait::Now));
        assert_eq!(r.id_taken(), next(1, Wait::Backoff(1)));
        // A join starts the count again.
        assert_eq!(r.lost(LONG), next(0, Wait::Now));
        assert_eq!(r.id_taken(), next(0, Wait::Soon));
    }

    #[test]
    fn a_server_that_refuses_us_leaves_the_rotation() {
        let mut r = Rotation::new(3);
        r.remove(0);
        assert_eq!(r.first(), Some(1));
        assert_eq!(r.refused(), Some(next(2, Wait::Now)));
        assert_eq!(r.failed(), next(2, Wait::Backoff(1)));
        assert_eq!(r.lost(LONG), next(2, Wait::Now));
        assert_eq!(r.refused(), None);
        assert_eq!(r.first(), None);
    }
}
