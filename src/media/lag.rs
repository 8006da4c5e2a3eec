//! Lag policy of one player: counts frames skipped because the player fell behind, rate-limits
//! the log line about it, and decides when a player that stays behind must be disconnected.
//!
//! "Behind" starts at the first skipped frame and ends only when the player's queue has fully
//! drained; a player behind for longer than the limit is disconnected.

/// What the caller should do after reporting to the tracker.
#[derive(Debug, PartialEq, Eq)]
pub enum LagAction {
    Continue,
    /// Log a line about drops: this many frames dropped since the last log line.
    Log {
        dropped_since_log: u64,
    },
    /// Behind for too long: disconnect the player with this reason.
    Disconnect {
        behind_ms: u64,
    },
}

#[derive(Debug)]
pub struct LagTracker {
    max_lag_ms: u64,
    log_interval_ms: u64,
    behind_since_ms: Option<u64>,
    last_log_ms: Option<u64>,
    dropped_total: u64,
    dropped_since_log: u64,
}

impl LagTracker {
    pub fn new(max_lag_ms: u64) -> Self {
        LagTracker {
            max_lag_ms,
            log_interval_ms: 5_000,
            behind_since_ms: None,
            last_log_ms: None,
            dropped_total: 0,
            dropped_since_log: 0,
        }
    }

    /// `count` frames were skipped at `now_ms`.
    pub fn dropped(&mut self, now_ms: u64, count: u64) -> LagAction {
        self.dropped_total += count;
        self.dropped_since_log += count;
        self.behind_since_ms.get_or_insert(now_ms);
        if let Some(action) = self.check(now_ms) {
            return action;
        }
        let due = self
            .last_log_ms
            .is_none_or(|last| now_ms.saturating_sub(last) >= self.log_interval_ms);
        if due {
            self.last_log_ms = Some(now_ms);
            let dropped_since_log = std::mem::take(&mut self.dropped_since_log);
            return LagAction::Log { dropped_since_log };
        }
        LagAction::Continue
    }

    /// The player's queue drained completely: it has caught up.
    pub fn caught_up(&mut self) {
        self.behind_since_ms = None;
    }

    /// Periodic check, also when nothing is dropped (a player that never reads).
    pub fn check(&self, now_ms: u64) -> Option<LagAction> {
        let since = self.behind_since_ms?;
        let behind_ms = now_ms.saturating_sub(since);
        (behind_ms > self.max_lag_ms).then_some(LagAction::Disconnect { behind_ms })
    }

    /// Marks the player behind without a drop (its queue is over the limit).
    pub fn stalled(&mut self, now_ms: u64) {
        self.behind_since_ms.get_or_insert(now_ms);
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    pub fn is_behind(&self) -> bool {
        self.behind_since_ms.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_at_a_limited_rate() {
        let mut lag = LagTracker::new(60_000);
        assert_eq!(
            lag.dropped(0, 3),
            LagAction::Log {
                dropped_since_log: 3
            }
        );
        assert_eq!(lag.dropped(1_000, 2), LagAction::Continue);
        assert_eq!(
            lag.dropped(5_000, 1),
            LagAction::Log {
                dropped_since_log: 3
            }
        );
        assert_eq!(lag.dropped_total(), 6);
    }

    #[test]
    fn disconnects_a_player_that_stays_behind() {
        let mut lag = LagTracker::new(2_000);
        lag.dropped(0, 1);
        assert_eq!(lag.check(1_500), None);
        assert_eq!(
            lag.check(2_500),
            Some(LagAction::Disconnect { behind_ms: 2_500 })
        );
    }

    #[test]
    fn catching_up_resets_the_clock() {
        let mut lag = LagTracker::new(2_000);
        lag.dropped(0, 1);
        lag.caught_up();
        assert!(!lag.is_behind());
        assert_eq!(lag.check(10_000), None);
        lag.stalled(10_000);
        assert_eq!(lag.check(11_000), None);
        assert!(matches!(
            lag.check(12_001),
            Some(LagAction::Disconnect { .. })
        ));
    }
}
