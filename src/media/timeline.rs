//! Per-player timeline: rebases the publisher's timestamps so each player starts at 0 and never
//! goes backwards, across republishes too.

/// Converts publisher timestamps (µs) into a player's timestamps (µs from its first packet).
#[derive(Debug, Default)]
pub struct Timeline {
    /// Publisher timestamp that maps to `offset_us`; `None` until the first frame or after an
    /// epoch change.
    base_us: Option<i64>,
    offset_us: i64,
    last_out_us: i64,
}

/// Step placed between the last timestamp of one publish and the first of the next.
const EPOCH_STEP_US: i64 = 1_000;

impl Timeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps a publisher timestamp to the player's timeline: starts at 0, monotonic.
    pub fn map(&mut self, dts_us: i64) -> i64 {
        let base = *self.base_us.get_or_insert(dts_us);
        let out = (dts_us - base + self.offset_us).max(self.last_out_us);
        self.last_out_us = out;
        out
    }

    /// The publisher changed (republish): the next timestamp continues just after the last one.
    pub fn new_epoch(&mut self) {
        if self.base_us.is_some() {
            self.base_us = None;
            self.offset_us = self.last_out_us + EPOCH_STEP_US;
        }
    }

    /// Last timestamp handed out, for messages that carry no media time of their own.
    pub fn last(&self) -> i64 {
        self.last_out_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_zero_and_is_monotonic() {
        let mut t = Timeline::new();
        assert_eq!(t.map(5_000_000), 0);
        assert_eq!(t.map(5_040_000), 40_000);
        assert_eq!(t.map(5_020_000), 40_000, "never goes back");
        assert_eq!(t.map(5_080_000), 80_000);
    }

    #[test]
    fn republish_continues_after_last_timestamp() {
        let mut t = Timeline::new();
        t.map(1_000_000);
        t.map(3_000_000);
        t.new_epoch();
        assert_eq!(t.map(0), 2_000_000 + EPOCH_STEP_US);
        assert_eq!(t.map(40_000), 2_040_000 + EPOCH_STEP_US);
    }
}
