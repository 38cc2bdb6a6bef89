//! Who may call what: authentication of every request, the route part of
//! the role table, and the [`Caller`] the handlers scope their answers by.
//!
//! With access [`Access::Open`] (`--auth off`) every request is served, as
//! anyone, and `X-Actor` names the actor. With [`Access::Tokens`] every
//! route but the public ones ([`PUBLIC`]) needs `Authorization: Bearer`: a
//! missing or unknown credential is a 401 with `WWW-Authenticate: Bearer`,
//! a known principal whose role the route's [`Action`] does not allow is a
//! 403, and neither reaches a handler, so neither writes anything. The
//! principal's name is the events' actor; `X-Actor` is ignored.
//!
//! What depends on the ticket (a customer sees and notes only its own, and
//! another's is a 404 so that its existence does not leak) is the handlers'
//! part, through [`Caller::customer_scope`].

use std::sync::Arc;

use auth::{Action, AuthError, Authenticator, Principal};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Routes anyone may call, with auth on or off.
pub const PUBLIC: [&str; 2] = ["/healthz", "/openapi.json"];

/// How requests are authenticated.
#[derive(Debug, Clone, Default)]
pub enum Access {
    /// No authentication: every request is served (`--auth off`).
    #[default]
    Open,
    /// Bearer tokens, resolved by the authenticator (`--auth token`).
    Tokens(Arc<Authenticator>),
}

/// Who a request speaks for, as the handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Auth is off: anyone, with `X-Actor` as the actor.
    Anyone,
    /// An authenticated principal.
    Principal(Principal),
}

impl Caller {
    /// The customer whose tickets alone this caller sees, if it is limited
    /// to one.
    pub fn customer_scope(&self) -> Option<&str> {
        match self {
            Caller::Anyone => None,
            Caller::Principal(principal) => principal.customer_scope(),
        }
    }

    /// Whether the role table lets this caller do `action`.
    pub fn may(&self, action: Action) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::Principal(principal) => principal.may(action),
        }
    }
}

/// The action a route stands for in the role table; `None` for public and
/// unknown routes. A `PATCH` is at least [`Action::AddNote`]; the handler
/// asks for [`Action::WorkTicket`] when it changes status or agent.
pub fn route_action(method: &Method, route: &str) -> Option<Action> {
    match (method.as_str(), route) {
        ("POST", "/tickets") => Some(Action::OpenTicket),
        ("GET", "/tickets" | "/tickets/stream" | "/tickets/{id}" | "/tickets/{id}/events") => {
            Some(Action::ReadTickets)
        }
        ("PATCH", "/tickets/{id}") => Some(Action::AddNote),
        ("GET", "/dashboard") => Some(Action::ReadDashboard),
        ("GET", "/metrics" | "/readyz") => Some(Action::Operate),
        ("GET", crate::dead_letters::LIST)
        | ("POST", crate::dead_letters::RETRY | crate::dead_letters::SKIP) => {
            Some(Action::AdministerDeadLetters)
        }
        ("DELETE", crate::customers::ERASE) => Some(Action::EraseCustomer),
        _ => None,
    }
}

/// The roles that may call a route, for the OpenAPI document.
pub fn route_roles(method: &Method, route: &str) -> Vec<&'static str> {
    let Some(action) = route_action(method, route) else {
        return Vec::new();
    };
    auth::Role::ALL
        .into_iter()
        .filter(|role| role.may(action))
        .map(auth::Role::name)
        .collect()
}

/// Authenticates the request and checks its route's role; hands the
/// handlers a [`Caller`].
pub(crate) async fn authenticate(
    State(access): State<Access>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let caller = match &access {
        Access::Open => Caller::Anyone,
        Access::Tokens(_) if route.as_deref().is_some_and(|r| PUBLIC.contains(&r)) => {
            return next.run(request).await;
        }
        Access::Tokens(authenticator) => {
            let principal = match bearer(&request) {
                Some(secret) => authenticator.authenticate(secret).await,
                None => Err(AuthError::Missing),
            };
            match principal {
                Ok(principal) => Caller::Principal(principal),
                Err(AuthError::Unavailable(error)) => {
                    return ApiError::Unavailable(Box::new(error)).into_response();
                }
                Err(error) => return unauthorized(&error),
            }
        }
    };
    let action = route
        .as_deref()
        .and_then(|route| route_action(request.method(), route));
    if let Some(action) = action
        && !caller.may(action)
    {
        return forbidden_route().into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The credential of `Authorization: Bearer <credential>`.
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, credential) = value.trim().split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

fn unauthorized(error: &AuthError) -> Response {
    let challenge = match error {
        AuthError::Missing => r#"Bearer realm="tickets""#,
        _ => r#"Bearer realm="tickets", error="invalid_token""#,
    };
    let mut response = ApiError::Unauthorized {
        detail: error.to_string(),
    }
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

fn forbidden_route() -> ApiError {
    ApiError::Forbidden {
        field: None,
        detail: "this token's role may not use this route".to_owned(),
    }
}
