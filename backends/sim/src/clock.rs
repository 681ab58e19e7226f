//! The simulated clock: the runtime's monotonic [`Instant`] (tokio's paused clock in tests,
//! madsim's virtual clock under `--cfg madsim`) mapped onto a wall clock of our choosing, so
//! exit times, record creation times and berth's `Now` all come from one source.

use std::time::Duration;

use tokio::time::Instant;

/// Wall clock at the simulation's epoch: 2026-01-01T00:00:00Z in unix nanoseconds (the same
/// base as `berth_core::testing::WALL_BASE`).
pub const DEFAULT_WALL_BASE: i64 = 1_767_225_600_000_000_000;

/// Maps the runtime's monotonic clock onto wall-clock unix nanoseconds:
/// `wall(t) = wall_base + (t - epoch)`. Cheap to copy; every copy agrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimClock {
    epoch: Instant,
    wall_base: i64,
}

impl SimClock {
    /// A clock whose epoch is now and whose wall time at the epoch is `wall_base`.
    pub fn new(wall_base: i64) -> SimClock {
        SimClock {
            epoch: Instant::now(),
            wall_base,
        }
    }

    /// The monotonic instant the wall base corresponds to.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Wall time at the epoch (unix ns).
    pub fn wall_base(&self) -> i64 {
        self.wall_base
    }

    /// Monotonic time since the epoch (berth's `Now::mono`).
    pub fn mono(&self) -> Duration {
        Instant::now().saturating_duration_since(self.epoch)
    }

    /// The wall clock now (unix ns).
    pub fn now_wall(&self) -> i64 {
        self.wall_of(Instant::now())
    }

    /// The wall clock at `t` (unix ns); instants before the epoch map to the wall base.
    pub fn wall_of(&self, t: Instant) -> i64 {
        let since = t.saturating_duration_since(self.epoch);
        self.wall_base
            .saturating_add(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
    }
}
