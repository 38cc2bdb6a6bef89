//! Bearer JWTs from an identity provider: signed (RS256 or ES256) by a key
//! of a JWKS file, from the configured issuer, for the configured audience,
//! unexpired. The principal comes from the claims:
//!
//! - `sub`: the principal's name (the events' actor);
//! - `role`: `customer`, `agent`, `admin` or `metrics`;
//! - `customer`: for the customer role, the customer it speaks for (required
//!   there, refused on other roles, as for API tokens).
//!
//! Only the asymmetric algorithms are accepted: a JWKS holds public keys,
//! and accepting HS256 or `none` would let anyone who has the JWKS sign.

use std::path::Path;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::principal::{Principal, Role};

/// The algorithms a token may be signed with.
const ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// Why the JWT configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("reading the JWKS file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the JWKS file {path} is not a JSON Web Key Set: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("the JWKS file {path} has no RS256 or ES256 signing key")]
    NoKeys { path: String },
}

/// Why a JWT was refused; shown in the 401's detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the bearer JWT is not valid: {0}")]
pub struct JwtRejected(pub String);

/// Verifies JWTs against a JWKS, an issuer and an audience.
#[derive(Clone)]
pub struct JwtVerifier {
    /// Each usable key with its `kid` (if any) and algorithm.
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    #[serde(default)]
    customer: Option<String>,
}

impl JwtVerifier {
    /// Loads the keys of a JWKS file.
    pub fn from_jwks_file(
        path: &Path,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, JwtConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| JwtConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let set: JwkSet = serde_json::from_str(&text).map_err(|source| JwtConfigError::Parse {
            path: shown.clone(),
            source,
        })?;
        let keys: Vec<_> = set.keys.iter().filter_map(usable).collect();
        if keys.is_empty() {
            return Err(JwtConfigError::NoKeys { path: shown });
        }
        Ok(Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// Whether a credential has a JWT's shape (three dot-separated parts),
    /// as opposed to an API token.
    pub fn looks_like_a_jwt(credential: &str) -> bool {
        credential.split('.').count() == 3
    }

    /// The principal a valid JWT speaks for.
    pub fn verify(&self, token: &str) -> Result<Principal, JwtRejected> {
        let reject = |why: &str| JwtRejected(why.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|e| JwtRejected(e.to_string()))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(reject("only RS256 and ES256 signatures are accepted"));
        }
        let (_, algorithm, key) = self
            .keys
            .iter()
            .find(|(kid, algorithm, _)| {
                *algorithm == header.alg
                    && (header.kid.is_none() || kid.as_deref() == header.kid.as_deref())
            })
            .ok_or_else(|| reject("no key of the JWKS matches its kid and algorithm"))?;
        let mut validation = Validation::new(*algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| JwtRejected(e.to_string()))?
            .claims;
        let role: Role = claims
            .role
            .parse()
            .map_err(|e: crate::principal::UnknownRole| {
                JwtRejected(format!("claim `role`: {e}"))
            })?;
        let name = claims.sub.trim();
        if name.is_empty() {
            return Err(reject("claim `sub` is empty"));
        }
        let customer = claims
            .customer
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        match (role, &customer) {
            (Role::Customer, None) => Err(reject("a customer's token needs the claim `customer`")),
            (Role::Agent | Role::Admin | Role::Metrics, Some(_)) => Err(reject(
                "only a customer's token carries the claim `customer`",
            )),
            _ => Ok(Principal {
                name: name.to_owned(),
                role,
                customer,
            }),
        }
    }
}

/// A JWK this verifier can use: an RSA key for RS256 or a P-256 key for
/// ES256 (by its `alg`, else by its type), not marked for encryption.
fn usable(jwk: &Jwk) -> Option<(Option<String>, Algorithm, DecodingKey)> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm, PublicKeyUse};
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    // A key that declares another algorithm than its type implies is not
    // one to verify with.
    let declared = match jwk.common.key_algorithm {
        None => algorithm,
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(_) => return None,
    };
    if declared != algorithm {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((jwk.common.key_id.clone(), algorithm, key))
}
