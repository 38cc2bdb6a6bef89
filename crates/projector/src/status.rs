//! `status`: what ops (and `/readyz`) see of each projection: how far it is,
//! how far behind, who applies it and in what state, and its rebuilds and
//! dead letters. It is data ([`StatusReport`]); the binaries present it (a
//! table or JSON for ops, a readiness answer, gauges).

use chrono::{DateTime, Utc};
use eventstore::{EventStore, Position};
use readmodel::{LeaseStatus, Projection, ProjectionStatus, SlotAdmin, SlotState};
use serde::Serialize;

use crate::ProjectorError;

/// Every projection's figures, read together.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The newest event's position.
    pub head: Position,
    /// The database's clock when the report was read.
    pub now: DateTime<Utc>,
    pub projections: Vec<ProjectionReport>,
}

/// One projection's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionReport {
    #[serde(serialize_with = "crate::names::serialize_projection")]
    pub projection: Projection,
    /// The live slot's checkpoint.
    pub checkpoint: Position,
    pub head: Position,
    /// Events after the checkpoint.
    pub lag_events: u64,
    /// Age of the oldest event not yet applied (0 when caught up).
    pub lag_seconds: f64,
    /// `running`, `idle`, `stopped on error`, or `stopped` (no live lease, or
    /// its holder stopped heartbeating).
    pub state: String,
    pub holder: Option<String>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub shadow: ShadowReport,
    /// Dead letters pending or asked to be retried.
    pub dead_letters_pending: u64,
    pub version: VersionReport,
}

/// The shadow slot, and the rebuild filling it, if one is running.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowReport {
    /// `building` or `retired`.
    pub state: String,
    pub building: bool,
    pub checkpoint: Position,
    pub version: u32,
    /// The rebuild holding the shadow's lease, when its lease is current.
    pub rebuild: Option<RebuildActivity>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RebuildActivity {
    pub holder: String,
    pub state: String,
    pub last_heartbeat: DateTime<Utc>,
    pub last_error: Option<String>,
}

/// The live slot's stored projection version against this build's.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct VersionReport {
    pub stored: u32,
    pub code: u32,
}

impl ProjectionReport {
    /// Whether the projection's lag is within `max_lag_seconds`.
    pub fn within(&self, max_lag_seconds: f64) -> bool {
        self.lag_seconds <= max_lag_seconds
    }
}

/// Reads every projection's status and the head.
pub async fn status(
    events: &dyn EventStore,
    views: &dyn SlotAdmin,
) -> Result<StatusReport, ProjectorError> {
    let mut statuses = Vec::with_capacity(Projection::ALL.len());
    for projection in Projection::ALL {
        statuses.push(views.status(projection).await?);
    }
    // Read after the checkpoints, so the head is never below one of them.
    let head = events.head().await?;
    let now = statuses.last().map_or_else(Utc::now, |s| s.now);
    let mut projections = Vec::with_capacity(statuses.len());
    for status in statuses {
        let checkpoint = status.live.checkpoint;
        let oldest_unapplied = if checkpoint < head {
            events
                .read_all(checkpoint, 1)
                .await?
                .first()
                .map(|event| event.occurred_at)
        } else {
            None
        };
        projections.push(report(status, head, oldest_unapplied, now));
    }
    Ok(StatusReport {
        head,
        now,
        projections,
    })
}

/// One projection's figures; `now` is the report's one clock reading, so
/// every projection's lag is measured at the same instant.
fn report(
    status: ProjectionStatus,
    head: Position,
    oldest_unapplied: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> ProjectionReport {
    let checkpoint = status.live.checkpoint;
    let (lag_events, lag_seconds) = lag(checkpoint, head, oldest_unapplied, now);
    let live = status.live_lease.as_ref();
    let rebuild = status
        .shadow_lease
        .as_ref()
        .filter(|lease| lease.expires_at > now)
        .map(|lease| RebuildActivity {
            holder: lease.holder.clone(),
            state: lease.state.name().to_owned(),
            last_heartbeat: lease.heartbeat_at,
            last_error: lease.last_error.clone(),
        });
    ProjectionReport {
        projection: status.projection,
        checkpoint,
        head,
        lag_events,
        lag_seconds,
        state: live_state(live, now).to_owned(),
        holder: live.map(|lease| lease.holder.clone()),
        last_heartbeat: live.map(|lease| lease.heartbeat_at),
        lease_expires_at: live.map(|lease| lease.expires_at),
        last_error: live.and_then(|lease| lease.last_error.clone()),
        shadow: ShadowReport {
            state: status.shadow.state.name().to_owned(),
            building: status.shadow.state == SlotState::Building,
            checkpoint: status.shadow.checkpoint,
            version: status.shadow.version,
            rebuild,
        },
        dead_letters_pending: status.dead_letters_pending,
        version: VersionReport {
            stored: status.live.version,
            code: status.projection.version(),
        },
    }
}

/// Sets the per-projection gauges from `report` (labelled by `projection`):
/// `projector_position` (the live checkpoint), `projector_lag_events`,
/// `projector_lag_seconds` and `projector_dead_letters_pending`.
pub fn record_status(report: &StatusReport) {
    for p in &report.projections {
        let name = p.projection.name();
        metrics::gauge!("projector_position", "projection" => name).set(p.checkpoint as f64);
        metrics::gauge!("projector_lag_events", "projection" => name).set(p.lag_events as f64);
        metrics::gauge!("projector_lag_seconds", "projection" => name).set(p.lag_seconds);
        metrics::gauge!("projector_dead_letters_pending", "projection" => name)
            .set(p.dead_letters_pending as f64);
    }
}

/// Lag in events and in seconds: the age of the oldest event not yet applied
/// (the first one after the checkpoint), 0 when caught up.
pub fn lag(
    checkpoint: Position,
    head: Position,
    oldest_unapplied: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (u64, f64) {
    let events = head.saturating_sub(checkpoint);
    if events == 0 {
        return (0, 0.0);
    }
    let seconds = oldest_unapplied.map_or(0.0, |at| {
        (now - at).num_milliseconds().max(0) as f64 / 1000.0
    });
    (events, seconds)
}

/// The live runner's state as ops should read it: what its holder last
/// reported while the lease is current, `stopped` otherwise (no holder, a
/// released lease, or a holder that stopped heartbeating for a whole TTL).
pub fn live_state(lease: Option<&LeaseStatus>, now: DateTime<Utc>) -> &'static str {
    match lease {
        Some(lease) if lease.expires_at > now => lease.state.name(),
        _ => "stopped",
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use readmodel::RunState;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn lag_is_zero_when_caught_up_whatever_the_clock() {
        assert_eq!(lag(10, 10, None, at(100)), (0, 0.0));
        assert_eq!(lag(12, 10, Some(at(0)), at(100)), (0, 0.0));
    }

    #[test]
    fn lag_in_seconds_is_the_age_of_the_oldest_unapplied_event() {
        let now = at(100) + Duration::milliseconds(250);
        assert_eq!(lag(7, 10, Some(at(90)), now), (3, 10.25));
        // An event stamped by a clock ahead of the database's is not negative.
        assert_eq!(lag(7, 10, Some(at(101)), now), (3, 0.0));
    }

    fn lease(state: RunState, expires_at: DateTime<Utc>) -> LeaseStatus {
        LeaseStatus {
            holder: "h:1:0".into(),
            token: 1,
            expires_at,
            heartbeat_at: expires_at - Duration::seconds(10),
            state,
            last_error: None,
        }
    }

    #[test]
    fn a_current_lease_says_what_its_holder_does_an_expired_one_is_stopped() {
        let now = at(100);
        assert_eq!(live_state(None, now), "stopped");
        assert_eq!(
            live_state(Some(&lease(RunState::Idle, at(105))), now),
            "idle"
        );
        assert_eq!(
            live_state(Some(&lease(RunState::Stopped, at(105))), now),
            "stopped on error"
        );
        assert_eq!(
            live_state(Some(&lease(RunState::Running, at(100))), now),
            "stopped",
            "released or expired"
        );
    }
}
