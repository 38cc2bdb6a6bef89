//! Resolving a bearer credential to a [`Principal`].
//!
//! Each answer of the token store is kept for [`REVOCATION_DELAY`], so a
//! client sending many requests costs one store read a second, and a token
//! revoked on any server stops working on every server sharing the store
//! within that delay. Unknown credentials are cached too (a client retrying a
//! bad token costs no more), in a bounded map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::jwt::{JwtRejected, JwtVerifier};
use crate::principal::Principal;
use crate::token::{TokenError, TokenHash, TokenStore};

/// How long a token lookup is reused: the most a revocation takes to reach
/// every server.
pub const REVOCATION_DELAY: Duration = Duration::from_secs(1);
/// Most lookups kept; past it the expired ones go, then all of them.
const MAX_CACHED: usize = 10_000;

/// Why a credential was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` credential.
    #[error("this resource needs a bearer token (Authorization: Bearer <token>)")]
    Missing,
    /// Not a known, unrevoked token.
    #[error("the bearer token is not valid (unknown, revoked or malformed)")]
    Invalid,
    /// A JWT that did not verify (the reason says why).
    #[error(transparent)]
    InvalidJwt(#[from] JwtRejected),
    /// The token store could not answer.
    #[error(transparent)]
    Unavailable(TokenError),
}

type Cached = (Instant, Option<Principal>);

/// Resolves bearer tokens against a [`TokenStore`].
#[derive(Debug)]
pub struct Authenticator {
    tokens: Arc<dyn TokenStore>,
    cache: Mutex<HashMap<TokenHash, Cached>>,
    /// Also accepts JWTs from an identity provider, when configured.
    jwt: Option<JwtVerifier>,
}

impl Authenticator {
    pub fn new(tokens: Arc<dyn TokenStore>) -> Self {
        Self {
            tokens,
            cache: Mutex::new(HashMap::new()),
            jwt: None,
        }
    }

    /// Accepts bearer JWTs that `verifier` verifies, besides API tokens.
    pub fn with_jwt(mut self, verifier: JwtVerifier) -> Self {
        self.jwt = Some(verifier);
        self
    }

    /// The principal `bearer` speaks for.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        if let Some(jwt) = &self.jwt
            && JwtVerifier::looks_like_a_jwt(bearer)
        {
            return Ok(jwt.verify(bearer)?);
        }
        let hash = TokenHash::of(bearer);
        if let Some(principal) = self.cached(&hash) {
            return principal.ok_or(AuthError::Invalid);
        }
        let found = self
            .tokens
            .token_by_hash(&hash)
            .await
            .map_err(AuthError::Unavailable)?;
        // The store found it by its hash; comparing again in constant time
        // costs nothing and does not rely on how the store compares.
        let principal = found
            .filter(|token| token.hash.matches(&hash))
            .and_then(|token| token.principal());
        self.remember(hash, principal.clone());
        principal.ok_or(AuthError::Invalid)
    }

    fn cached(&self, hash: &TokenHash) -> Option<Option<Principal>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, principal) = cache.get(hash)?;
        (at.elapsed() < REVOCATION_DELAY).then(|| principal.clone())
    }

    fn remember(&self, hash: TokenHash, principal: Option<Principal>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| at.elapsed() < REVOCATION_DELAY);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(hash, (Instant::now(), principal));
    }
}
