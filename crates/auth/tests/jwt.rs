//! JWT verification against the fixture JWKS (`tests/fixtures`): tokens
//! signed with its keys by the configured issuer for the configured audience
//! give their principal; every other token is refused.

use std::path::PathBuf;

use auth::{JwtVerifier, Role};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "tickets";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn verifier() -> JwtVerifier {
    JwtVerifier::from_jwks_file(&fixture("jwks.json"), ISSUER, AUDIENCE).expect("the fixture JWKS")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

fn claims(extra: Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "maria", "role": "agent", "exp": now() + 300,
    });
    for (key, value) in extra.as_object().expect("an object") {
        claims[key] = value.clone();
    }
    claims
}

fn sign(algorithm: Algorithm, key_file: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(fixture(key_file)).expect("a fixture key");
    let key = match algorithm {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .expect("a PEM key");
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &key).expect("signed")
}

#[test]
fn rs256_and_es256_tokens_give_their_principal() {
    let verifier = verifier();
    let agent = sign(
        Algorithm::RS256,
        "rsa-private.pem",
        Some("test-rsa"),
        &claims(json!({})),
    );
    let principal = verifier.verify(&agent).expect("valid");
    assert_eq!(
        (principal.name.as_str(), principal.role),
        ("maria", Role::Agent)
    );
    assert_eq!(principal.customer, None);

    let customer = claims(json!({"sub": "web", "role": "customer", "customer": "acme"}));
    let token = sign(
        Algorithm::ES256,
        "ec-private.pem",
        Some("test-ec"),
        &customer,
    );
    let principal = verifier.verify(&token).expect("valid");
    assert_eq!(principal.role, Role::Customer);
    assert_eq!(principal.customer_scope(), Some("acme"));
    // Without a kid, the key is found by algorithm.
    let token = sign(Algorithm::ES256, "ec-private.pem", None, &customer);
    assert!(verifier.verify(&token).is_ok());
    assert!(JwtVerifier::looks_like_a_jwt(&token));
    assert!(!JwtVerifier::looks_like_a_jwt("tkt_abc"));
}

#[test]
fn every_other_token_is_refused() {
    let verifier = verifier();
    let refused = |token: String, why: &str| {
        let rejection = verifier.verify(&token).expect_err(why);
        eprintln!("{why}: {rejection}");
    };
    let rsa = |claims: &Value| {
        sign(
            Algorithm::RS256,
            "rsa-private.pem",
            Some("test-rsa"),
            claims,
        )
    };
    refused(
        rsa(&claims(json!({"iss": "https://evil.test"}))),
        "another issuer",
    );
    refused(rsa(&claims(json!({"aud": "other"}))), "another audience");
    refused(rsa(&claims(json!({"exp": now() - 3600}))), "expired");
    refused(rsa(&claims(json!({"role": "root"}))), "an unknown role");
    refused(
        rsa(&claims(json!({"role": "customer"}))),
        "a customer without a customer",
    );
    refused(
        rsa(&claims(json!({"customer": "acme"}))),
        "an agent naming a customer",
    );
    refused(rsa(&claims(json!({"sub": " "}))), "an empty subject");
    let mut no_exp = claims(json!({}));
    no_exp.as_object_mut().expect("object").remove("exp");
    refused(rsa(&no_exp), "no expiry");
    refused(
        sign(
            Algorithm::RS256,
            "untrusted-rsa-private.pem",
            Some("test-rsa"),
            &claims(json!({})),
        ),
        "a key outside the JWKS",
    );
    refused(
        sign(
            Algorithm::RS256,
            "rsa-private.pem",
            Some("unknown-kid"),
            &claims(json!({})),
        ),
        "an unknown kid",
    );
    let hs256 = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(b"anyone can sign with a shared secret"),
    )
    .expect("signed");
    refused(hs256, "HS256");
    // `alg: none`, hand-made: header and claims, no signature.
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    refused(
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none"})),
            b64(&claims(json!({})))
        ),
        "alg none",
    );
}

#[test]
fn a_jwks_without_usable_keys_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, r#"{"keys": []}"#).expect("write");
    let error = JwtVerifier::from_jwks_file(&path, ISSUER, AUDIENCE).expect_err("no keys");
    assert!(error.to_string().contains("no RS256 or ES256"), "{error}");
    std::fs::write(&path, "not json").expect("write");
    assert!(JwtVerifier::from_jwks_file(&path, ISSUER, AUDIENCE).is_err());
}
