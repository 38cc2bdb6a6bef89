//! Who is asking, and what they may do.
//!
//! - [`principal`]: a [`Principal`] (a name, a [`Role`], and for a customer
//!   the customer it speaks for), and the role table's questions
//!   ([`Principal::may`]).
//! - [`token`]: API tokens: a secret is shown once and only its SHA-256 is
//!   kept; [`TokenStore`] is the contract each store backend implements.
//! - [`authenticator`]: turns a bearer credential into a principal, with a
//!   short cache so a revocation takes effect within a second on every server.
//! - [`jwt`]: bearer JWTs from an identity provider, verified against a JWKS.
//!
//! No HTTP here: the API maps [`AuthError`] to 401/403/503 problems.

pub mod authenticator;
pub mod jwt;
pub mod principal;
pub mod token;

pub use authenticator::{AuthError, Authenticator, REVOCATION_DELAY};
pub use jwt::{JwtConfigError, JwtVerifier};
pub use principal::{Action, Principal, Role};
pub use token::{NewToken, Secret, TokenError, TokenHash, TokenInfo, TokenStore};
