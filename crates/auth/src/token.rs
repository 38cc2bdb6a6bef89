//! API tokens. A token's secret is 32 random bytes, shown once when the
//! token is created; the store keeps only its SHA-256 ([`TokenHash`]). A
//! fast hash is the right one here: the secret is random, not a password, so
//! there is nothing to guess that a slow hash would protect.

use std::fmt;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::principal::{Principal, Role};

/// What every secret starts with, so that a leaked one is easy to recognise
/// (and to search for in logs and repositories).
pub const SECRET_PREFIX: &str = "tkt_";
/// Longest token name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A token's secret: what a client sends as `Authorization: Bearer …`.
/// Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A new random secret.
    pub fn generate() -> Self {
        let mut bytes = [0_u8; 32];
        // The OS's randomness is there on every platform this runs on; a
        // machine without it cannot issue secrets at all.
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        Secret(format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The secret, to print once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The SHA-256 of a secret, in lower-case hex: what the store keeps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    /// The hash of a presented credential.
    pub fn of(secret: &str) -> Self {
        let digest = Sha256::digest(secret.as_bytes());
        let mut hex = String::with_capacity(64);
        for byte in digest {
            hex.push_str(&format!("{byte:02x}"));
        }
        TokenHash(hex)
    }

    /// A hash as a store holds it (64 lower-case hex digits).
    pub fn from_stored(text: &str) -> Result<Self, TokenError> {
        if text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(TokenHash(text.to_owned()))
        } else {
            Err(TokenError::Corrupt(format!(
                "a stored token hash is not 64 lower-case hex digits: {text:?}"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Equality that takes the same time however many leading digits match,
    /// so that the answer's timing says nothing about the stored hash.
    pub fn matches(&self, other: &TokenHash) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// A token as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    /// Set exactly for a customer token.
    pub customer: Option<String>,
    pub hash: TokenHash,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TokenInfo {
    /// Why no store may hold this token, if none may: it needs a name, and a
    /// customer exactly when it is a customer token (one without would be
    /// scoped to no customer, that is, see every ticket). Stores check it on
    /// the way in and out, as a server may run without their schema checks.
    pub fn shape_error(&self) -> Option<String> {
        if self.name.is_empty() {
            return Some("a token needs a name".into());
        }
        match (self.role, self.customer.as_deref()) {
            (Role::Customer, Some(customer)) if !customer.is_empty() => None,
            (Role::Customer, _) => {
                Some(format!("customer token {:?} names no customer", self.name))
            }
            (_, None) => None,
            (role, Some(_)) => Some(format!(
                "{role} token {:?} names a customer; only a customer token does",
                self.name
            )),
        }
    }

    /// Who a request bearing this token speaks for, unless it was revoked.
    pub fn principal(&self) -> Option<Principal> {
        self.revoked_at.is_none().then(|| Principal {
            name: self.name.clone(),
            role: self.role,
            customer: self.customer.clone(),
        })
    }
}

/// A token to store, made by [`NewToken::issue`] with its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken(pub TokenInfo);

impl NewToken {
    /// A new token and its secret, after checking the name and that a
    /// customer is named exactly for the customer role.
    pub fn issue(
        name: &str,
        role: Role,
        customer: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(NewToken, Secret), TokenError> {
        let name = name.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(TokenError::Invalid(format!(
                "a token name must be 1 to {MAX_NAME_CHARS} visible characters"
            )));
        }
        let customer = customer.map(str::trim);
        match (role, customer) {
            (Role::Customer, None | Some("")) => {
                return Err(TokenError::Invalid(
                    "a customer token needs --customer: the customer it speaks for".into(),
                ));
            }
            (Role::Agent | Role::Admin | Role::Metrics, Some(_)) => {
                return Err(TokenError::Invalid(format!(
                    "only a customer token names a customer; a {role} token sees every ticket"
                )));
            }
            _ => {}
        }
        let secret = Secret::generate();
        let token = TokenInfo {
            name: name.to_owned(),
            role,
            customer: customer.map(str::to_owned),
            hash: TokenHash::of(secret.expose()),
            created_at: now,
            revoked_at: None,
        };
        Ok((NewToken(token), secret))
    }
}

impl NewToken {
    /// Refuses a token no store may create: one with a [`TokenInfo::shape_error`],
    /// or one revoked already.
    pub fn check(&self) -> Result<(), TokenError> {
        if let Some(why) = self.0.shape_error() {
            return Err(TokenError::Invalid(why));
        }
        if self.0.revoked_at.is_some() {
            return Err(TokenError::Invalid(format!(
                "token {:?} is revoked already; a new token is not",
                self.0.name
            )));
        }
        Ok(())
    }
}

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A token (revoked or not) already has this name; names are never reused,
    /// so that the events' actor stays unambiguous.
    #[error("a token named {0:?} already exists (names are never reused, revoked or not)")]
    NameTaken(String),
    /// The request breaks a rule (the message says which).
    #[error("{0}")]
    Invalid(String),
    /// The store could not be reached or answered an error; try again.
    #[error("the token store is unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// What the store holds is not a token.
    #[error("corrupt token data: {0}")]
    Corrupt(String),
}

/// Where tokens live: each store backend implements it, next to its events.
#[async_trait]
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// Stores a new token; [`TokenError::NameTaken`] when its name is used.
    async fn create_token(&self, token: &NewToken) -> Result<(), TokenError>;

    /// Every token, revoked ones included, ordered by name.
    async fn tokens(&self) -> Result<Vec<TokenInfo>, TokenError>;

    /// Revokes the named token as of `at`; false when there is no such
    /// token or it was already revoked.
    async fn revoke_token(&self, name: &str, at: DateTime<Utc>) -> Result<bool, TokenError>;

    /// The token whose secret hashes to `hash`, revoked or not.
    async fn token_by_hash(&self, hash: &TokenHash) -> Result<Option<TokenInfo>, TokenError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_hidden_from_debug() {
        let (a, b) = (Secret::generate(), Secret::generate());
        assert_ne!(a, b);
        assert!(a.expose().starts_with(SECRET_PREFIX));
        assert_eq!(a.expose().len(), SECRET_PREFIX.len() + 43);
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn hashes_are_sha256_hex_and_compare_exactly() {
        let hash = TokenHash::of("abc");
        assert_eq!(
            hash.as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(hash.matches(&TokenHash::of("abc")));
        assert!(!hash.matches(&TokenHash::of("abd")));
        assert_eq!(TokenHash::from_stored(hash.as_str()).ok(), Some(hash));
        assert!(TokenHash::from_stored("ABC").is_err());
    }

    #[test]
    fn a_customer_is_named_exactly_for_customer_tokens() {
        let now = Utc::now();
        assert!(NewToken::issue("web", Role::Customer, Some("acme"), now).is_ok());
        assert!(NewToken::issue("web", Role::Customer, None, now).is_err());
        assert!(NewToken::issue("ops", Role::Agent, Some("acme"), now).is_err());
        assert!(NewToken::issue("ops", Role::Agent, None, now).is_ok());
        assert!(NewToken::issue(" ", Role::Admin, None, now).is_err());
        let (token, secret) = NewToken::issue("ops", Role::Admin, None, now).expect("issued");
        assert!(token.0.hash.matches(&TokenHash::of(secret.expose())));
        assert_eq!(token.0.principal().map(|p| p.name), Some("ops".into()));
    }
}
