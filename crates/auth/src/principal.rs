//! Principals, roles and the role table: which role may do which
//! [`Action`]. Scoping a customer to its own tickets is the caller's part
//! (it knows the ticket); [`Principal::customer_scope`] says whether to.

use std::fmt;
use std::str::FromStr;

/// What a principal is allowed to do, coarsely; see [`Principal::may`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Opens tickets and adds notes, on its own tickets only.
    Customer,
    /// Works every ticket.
    Agent,
    /// Everything, operations endpoints and dead-letter administration
    /// included.
    Admin,
    /// Reads `/metrics` and `/readyz` only (a monitoring system's token).
    Metrics,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Customer, Role::Agent, Role::Admin, Role::Metrics];

    /// The role table: whether this role may do `action` at all.
    pub fn may(self, action: Action) -> bool {
        match (self, action) {
            (Role::Admin, _) => true,
            (Role::Agent, action) => !matches!(
                action,
                Action::Operate | Action::AdministerDeadLetters | Action::EraseCustomer
            ),
            (Role::Customer, action) => matches!(
                action,
                Action::OpenTicket | Action::ReadTickets | Action::AddNote
            ),
            (Role::Metrics, action) => action == Action::Operate,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Agent => "agent",
            Role::Admin => "admin",
            Role::Metrics => "metrics",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected customer, agent, admin or metrics")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.name() == text)
            .ok_or_else(|| UnknownRole(text.to_owned()))
    }
}

/// The requests the role table distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /tickets`.
    OpenTicket,
    /// `GET /tickets`, `/tickets/stream`, `/tickets/{id}`, `/tickets/{id}/events`.
    ReadTickets,
    /// `PATCH /tickets/{id}` with only a note.
    AddNote,
    /// `PATCH /tickets/{id}` changing status or agent.
    WorkTicket,
    /// `GET /dashboard`.
    ReadDashboard,
    /// `GET /metrics`, `GET /readyz`.
    Operate,
    /// `GET /projections/dead-letters` and retrying or skipping one: what
    /// the projector applies next, so admins only (a monitoring token that
    /// may read `/readyz` may not move a projection on).
    AdministerDeadLetters,
    /// `DELETE /customers/{customer}`: a customer's right to erasure,
    /// which cannot be undone; admins only.
    EraseCustomer,
}

/// Who a request speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name, or the JWT's subject: what the events record as
    /// their actor.
    pub name: String,
    pub role: Role,
    /// For a customer: the customer it speaks for. `None` for other roles.
    pub customer: Option<String>,
}

impl Principal {
    /// Whether the role table lets this principal do `action` at all (a
    /// customer then only on its own tickets: see [`Self::customer_scope`]).
    pub fn may(&self, action: Action) -> bool {
        self.role.may(action)
    }

    /// The customer whose tickets alone this principal sees, if it is
    /// limited to one.
    pub fn customer_scope(&self) -> Option<&str> {
        match self.role {
            Role::Customer => self.customer.as_deref(),
            Role::Agent | Role::Admin | Role::Metrics => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role) -> Principal {
        Principal {
            name: "p".into(),
            role,
            customer: (role == Role::Customer).then(|| "acme".into()),
        }
    }

    #[test]
    fn the_role_table() {
        use Action::*;
        let table = [
            (OpenTicket, [true, true, true, false]),
            (ReadTickets, [true, true, true, false]),
            (AddNote, [true, true, true, false]),
            (WorkTicket, [false, true, true, false]),
            (ReadDashboard, [false, true, true, false]),
            (Operate, [false, false, true, true]),
            (AdministerDeadLetters, [false, false, true, false]),
            (EraseCustomer, [false, false, true, false]),
        ];
        for (action, allowed) in table {
            for (role, allowed) in Role::ALL.into_iter().zip(allowed) {
                assert_eq!(principal(role).may(action), allowed, "{role} {action:?}");
            }
        }
    }

    #[test]
    fn only_customers_are_scoped() {
        assert_eq!(principal(Role::Customer).customer_scope(), Some("acme"));
        for role in [Role::Agent, Role::Admin, Role::Metrics] {
            assert_eq!(principal(role).customer_scope(), None);
        }
    }

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
