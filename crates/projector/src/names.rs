//! How the reports serialise a projection and a slot: by name.

use readmodel::{Projection, Target};

/// Serialises a projection as its name.
pub(crate) fn serialize_projection<S: serde::Serializer>(
    projection: &Projection,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(projection.name())
}

/// Serialises a slot as its name (`live`, `shadow`).
pub(crate) fn serialize_target<S: serde::Serializer>(
    target: &Target,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(target.name())
}
