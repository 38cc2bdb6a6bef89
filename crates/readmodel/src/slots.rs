//! The slot bookkeeping every backend does the same way: a projection's two
//! slots as read back from storage (exactly one live), the fence a rebuild's
//! slot moves need, and what a commit's changes must match.

use crate::project::ViewChanges;
use crate::projection::{Fence, Projection, Slot, Target};
use crate::status::{SlotState, SlotStatus};
use crate::store::ViewError;

/// A projection's two slots as stored: exactly one live, the other the shadow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slots {
    pub live: (Slot, SlotStatus),
    pub shadow: (Slot, SlotStatus),
}

impl Slots {
    /// The slots of `projection` from what its store holds, in any order;
    /// anything but slots a and b with exactly one of them live is corrupt
    /// (the message says so, for the backend to report as its own).
    pub fn from_stored(
        projection: Projection,
        stored: impl IntoIterator<Item = (Slot, SlotStatus)>,
    ) -> Result<Slots, String> {
        let mut live = None;
        let mut others = Vec::new();
        for (slot, status) in stored {
            if status.state == SlotState::Live && live.is_none() {
                live = Some((slot, status));
            } else {
                others.push((slot, status));
            }
        }
        match (live, others.as_slice()) {
            (Some(live), [shadow]) if shadow.1.state != SlotState::Live && shadow.0 != live.0 => {
                Ok(Slots {
                    live,
                    shadow: shadow.clone(),
                })
            }
            _ => Err(format!(
                "projection_slots of {projection}: expected slots a and b, exactly one of \
                 them live (was migration 0003 applied?)"
            )),
        }
    }

    /// The slot `target` names, with its status.
    pub fn get(&self, target: Target) -> &(Slot, SlotStatus) {
        match target {
            Target::Live => &self.live,
            Target::Shadow => &self.shadow,
        }
    }

    /// Refuses a swap unless the shadow slot is building (a rebuild reset it
    /// and has been filling it).
    pub fn check_swap(&self, projection: Projection) -> Result<(), ViewError> {
        let (_, status) = &self.shadow;
        if status.state == SlotState::Building {
            Ok(())
        } else {
            Err(ViewError::Corrupt(format!(
                "cannot swap {projection}: its shadow slot is {}, not building",
                status.state.name()
            )))
        }
    }
}

impl Fence {
    /// Refuses `what` (a rebuild's reset, swap, index work) unless this is
    /// the shadow slot's fence: only a rebuild moves slots.
    pub fn require_shadow(&self, what: &str) -> Result<(), ViewError> {
        match self.target {
            Target::Shadow => Ok(()),
            Target::Live => Err(ViewError::Corrupt(format!(
                "{what} of {} needs the shadow slot's lease, not the live one's",
                self.projection
            ))),
        }
    }
}

impl ViewChanges {
    /// Refuses changes that break the commit contract for `fence`: changes or
    /// rows of another projection, a dashboard delta outside the dashboard, a
    /// checkpoint moved back. Checked before anything is read.
    pub fn check_fits(&self, fence: &Fence) -> Result<(), ViewError> {
        let projection = self.projection;
        let refuse = |what: String| Err(ViewError::Corrupt(what));
        if fence.projection != projection {
            return refuse(format!(
                "a {} fence cannot commit changes to {projection}",
                fence.projection
            ));
        }
        if self.rows.projection() != projection {
            return refuse(format!(
                "changes to {projection} carry {} rows",
                self.rows.projection()
            ));
        }
        if projection != Projection::Dashboard && !self.dashboard.is_zero() {
            return refuse(format!("changes to {projection} carry a dashboard delta"));
        }
        if self.to < self.from {
            return refuse(format!(
                "changes to {projection} move the checkpoint back from {} to {}",
                self.from, self.to
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::SlotState::{Building, Live, Retired};

    fn status(state: SlotState) -> SlotStatus {
        SlotStatus {
            checkpoint: 7,
            version: 1,
            state,
        }
    }

    #[test]
    fn exactly_one_live_slot_of_two() {
        let slots = Slots::from_stored(
            Projection::List,
            [(Slot::A, status(Retired)), (Slot::B, status(Live))],
        )
        .expect("one live, one shadow");
        assert_eq!(slots.get(Target::Live), &(Slot::B, status(Live)));
        assert_eq!(slots.get(Target::Shadow), &(Slot::A, status(Retired)));
        for stored in [
            vec![],
            vec![(Slot::A, status(Live))],
            vec![(Slot::A, status(Live)), (Slot::B, status(Live))],
            vec![(Slot::A, status(Retired)), (Slot::B, status(Building))],
            vec![(Slot::A, status(Live)), (Slot::A, status(Retired))],
            vec![
                (Slot::A, status(Live)),
                (Slot::B, status(Retired)),
                (Slot::B, status(Building)),
            ],
        ] {
            let error = Slots::from_stored(Projection::List, stored.clone())
                .expect_err(&format!("{stored:?} is corrupt"));
            assert!(error.contains("projection_slots of list"), "{error}");
        }
    }

    #[test]
    fn only_a_building_shadow_swaps() {
        let slots = |shadow| Slots {
            live: (Slot::A, status(Live)),
            shadow: (Slot::B, status(shadow)),
        };
        assert!(slots(Building).check_swap(Projection::Detail).is_ok());
        assert!(slots(Retired).check_swap(Projection::Detail).is_err());
    }
}
