//! The projections the projector keeps, and the names ops use for them.
//!
//! Each projection has its own rows, checkpoint, lease and version, so each
//! can be rebuilt, verified and run on its own. Every projection is stored in
//! two slots: the live one the query side reads, and a shadow one a rebuild
//! fills while the live one keeps serving; a swap makes the shadow live.

use std::fmt;
use std::str::FromStr;

/// One read model and the fold that keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Projection {
    /// `GET /tickets/{id}`: everything a detail page shows.
    Detail,
    /// `GET /tickets`: one row per ticket, previews instead of full texts.
    List,
    /// `GET /dashboard`: ticket counts per status (and each ticket's status,
    /// which the counts are kept from).
    Dashboard,
}

impl Projection {
    pub const ALL: [Projection; 3] = [Projection::Detail, Projection::List, Projection::Dashboard];

    /// The name used on the command line, in stores and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Detail => "detail",
            Projection::List => "list",
            Projection::Dashboard => "dashboard",
        }
    }

    /// The version of this projection's fold in this build. Raise it when the
    /// fold changes what it writes: a daemon that finds an older version stored
    /// rebuilds the projection (blue/green) at start-up.
    pub fn version(self) -> u32 {
        match self {
            Projection::Detail => 1,
            Projection::List => 1,
            Projection::Dashboard => 1,
        }
    }
}

impl fmt::Display for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown projection `{0}`: expected detail, list or dashboard")]
pub struct UnknownProjection(pub String);

impl FromStr for Projection {
    type Err = UnknownProjection;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Projection::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownProjection(s.to_owned()))
    }
}

/// Which of a projection's two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The slot the query side reads and the daemon keeps current.
    Live,
    /// The slot a rebuild fills, swapped in when it is ready.
    Shadow,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Live => "live",
            Target::Shadow => "shadow",
        }
    }
}

/// One of a projection's two storage slots; which one is live is stored data
/// (see `SlotState`). The names are the contract both backends store under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub const BOTH: [Slot; 2] = [Slot::A, Slot::B];

    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    pub fn from_name(name: &str) -> Option<Slot> {
        Slot::BOTH.into_iter().find(|slot| slot.name() == name)
    }

    /// The table (SQLite) or collection (MongoDB) of a projection's per-ticket
    /// rows in this slot: a closed set, never built from input.
    pub fn rows_name(self, projection: Projection) -> &'static str {
        match (projection, self) {
            (Projection::Detail, Slot::A) => "detail_a",
            (Projection::Detail, Slot::B) => "detail_b",
            (Projection::List, Slot::A) => "list_a",
            (Projection::List, Slot::B) => "list_b",
            (Projection::Dashboard, Slot::A) => "dashboard_tickets_a",
            (Projection::Dashboard, Slot::B) => "dashboard_tickets_b",
        }
    }

    /// The table or collection of the dashboard's counts in this slot.
    pub fn counts_name(self) -> &'static str {
        match self {
            Slot::A => "dashboard_counts_a",
            Slot::B => "dashboard_counts_b",
        }
    }
}

/// Proof of holding a projection slot's lease, checked by the store on every
/// write to that slot. The token grows each time the lease changes hands, so a
/// holder whose lease expired and was taken over cannot write any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub projection: Projection,
    pub target: Target,
    pub holder: String,
    pub token: u64,
}

/// What a lease holder says it is doing, recorded with its heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Applying events.
    Running,
    /// Caught up with the store, waiting for events.
    Idle,
    /// Filling the shadow slot.
    Rebuilding,
    /// Stopped at an event it cannot apply (see the dead letters).
    Stopped,
}

impl RunState {
    pub fn name(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Idle => "idle",
            RunState::Rebuilding => "rebuilding",
            RunState::Stopped => "stopped on error",
        }
    }

    /// Parses [`RunState::name`]; stores use it to read back what they wrote.
    pub fn from_name(name: &str) -> Option<RunState> {
        [
            RunState::Running,
            RunState::Idle,
            RunState::Rebuilding,
            RunState::Stopped,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        for p in Projection::ALL {
            assert_eq!(p.name().parse::<Projection>(), Ok(p));
        }
        assert!("all".parse::<Projection>().is_err());
        for s in [
            RunState::Running,
            RunState::Idle,
            RunState::Rebuilding,
            RunState::Stopped,
        ] {
            assert_eq!(RunState::from_name(s.name()), Some(s));
        }
    }
}
