//! API tokens ([`auth::TokenStore`]) in the `api_tokens` collection
//! (`migrations/mongodb/0007_api_tokens.json`): one document per token,
//! revoked ones included, `_id` = the token's name, looked up by the SHA-256
//! of the secret through the unique index `hash`.
//!
//! Each operation is one command outside any transaction, on the database
//! handle's concerns (`concerns` in the crate root): reads see only
//! majority-committed documents, and a create or a revocation is
//! acknowledged once a majority has it, so a failover cannot take back a
//! token or a revocation that was reported done. Every operation is bounded
//! by `bounds::READ_DEADLINE`, past which it is `Unavailable`. Times are
//! BSON dates: milliseconds (`codec`).
//!
//! A name is never reused: `_id` is unique, and revoking sets `revoked_at`
//! and keeps the document. An insert that meets a stored name is
//! `NameTaken`.
//!
//! A create or a revocation that ends `Unavailable` may still have taken
//! effect (the reply was lost, or the majority's acknowledgement came too
//! late). The driver retries a write once itself, and on a replica set the
//! server recognises the retry (retryable writes) and answers as for the
//! first attempt; past that, trying again answers `NameTaken` for a token
//! that was in fact stored, or false for a revocation that was in fact made.

use async_trait::async_trait;
use auth::{NewToken, Role, TokenError, TokenHash, TokenInfo, TokenStore};
use chrono::{DateTime, Utc};
use eventstore::StoreError;
use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::{Bson, Document, doc};

use crate::codec::{self, Fields};
use crate::error::{DbError, is_duplicate_in, is_duplicate_key};
use crate::{MongoStore, bounds};

type Result<T, E = DbError<TokenError>> = std::result::Result<T, E>;

/// The collection and its unique index on `hash`, from migration 0007.
pub(crate) const TOKENS: &str = "api_tokens";
const HASH_INDEX: &str = "hash";
/// The index every collection has on `_id`: here, the token's name.
const NAME_INDEX: &str = "_id_";

/// The store's mapping of server failures (`error`), reused: an unreachable
/// or silent server is `Unavailable`, an unreadable document `Corrupt`.
impl From<DbError<TokenError>> for TokenError {
    fn from(error: DbError<TokenError>) -> Self {
        let error: DbError<StoreError> = match error {
            DbError::Refused(refused) => return refused,
            DbError::Mongo(e) => DbError::Mongo(e),
            DbError::Corrupt(what) => DbError::Corrupt(what),
            DbError::Retry(what) => DbError::Retry(what),
            DbError::Unavailable(what) => DbError::Unavailable(what),
        };
        match StoreError::from(error) {
            StoreError::Corrupt(what) => TokenError::Corrupt(what),
            StoreError::Unavailable(source) => TokenError::Unavailable(source),
            // The mapping makes nothing else of a server failure.
            other => TokenError::Unavailable(Box::new(other)),
        }
    }
}

fn document(token: &TokenInfo) -> Document {
    doc! {
        "_id": &token.name,
        "role": token.role.name(),
        "customer": token.customer.as_deref(),
        "hash": token.hash.as_str(),
        "created_at": codec::date(token.created_at),
        "revoked_at": Bson::Null,
    }
}

fn read(document: &Document) -> Result<TokenInfo, String> {
    let fields = Fields::new(TOKENS, document);
    let role = fields.str("role")?;
    let token = TokenInfo {
        name: fields.str("_id")?.to_owned(),
        role: role
            .parse::<Role>()
            .map_err(|e| fields.corrupt(e.to_string()))?,
        customer: fields.opt_str("customer")?.map(str::to_owned),
        hash: TokenHash::from_stored(fields.str("hash")?).map_err(|e| match e {
            TokenError::Corrupt(what) => fields.corrupt(what),
            other => fields.corrupt(other.to_string()),
        })?,
        created_at: fields.time("created_at")?,
        revoked_at: match document.get("revoked_at") {
            None | Some(Bson::Null) => None,
            Some(_) => Some(fields.time("revoked_at")?),
        },
    };
    match token.shape_error() {
        Some(why) => Err(fields.corrupt(why)),
        None => Ok(token),
    }
}

async fn insert(tokens: &Collection<Document>, token: &TokenInfo) -> Result<()> {
    match tokens.insert_one(document(token)).await {
        Ok(_) => Ok(()),
        // The name first: it is the client's text and may spell an index
        // name; a hash is hex digits and never spells `_id_`.
        Err(e) if is_duplicate_in(&e, NAME_INDEX) => {
            Err(DbError::Refused(TokenError::NameTaken(token.name.clone())))
        }
        Err(e) if is_duplicate_in(&e, HASH_INDEX) => {
            Err(DbError::Refused(TokenError::Invalid(format!(
                "another token already has the hash of token {:?}'s secret; issue a new secret",
                token.name
            ))))
        }
        // A server that names neither index: names are what collide.
        Err(e) if is_duplicate_key(&e) => {
            Err(DbError::Refused(TokenError::NameTaken(token.name.clone())))
        }
        Err(e) => Err(e.into()),
    }
}

async fn list(tokens: &Collection<Document>) -> Result<Vec<TokenInfo>> {
    // `_id` order: the name's UTF-8 bytes (the simple collation), as Rust
    // orders strings.
    let documents: Vec<Document> = tokens
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await?
        .try_collect()
        .await?;
    documents
        .iter()
        .map(|document| read(document).map_err(DbError::Corrupt))
        .collect()
}

async fn revoke(tokens: &Collection<Document>, name: &str, at: DateTime<Utc>) -> Result<bool> {
    // `revoked_at: null` matches only a token not yet revoked (the field is
    // always there, null until then): of concurrent revocations, one matches.
    let updated = tokens
        .update_one(
            doc! { "_id": name, "revoked_at": Bson::Null },
            doc! { "$set": { "revoked_at": codec::date(at) } },
        )
        .await?;
    Ok(updated.matched_count == 1)
}

async fn by_hash(tokens: &Collection<Document>, hash: &TokenHash) -> Result<Option<TokenInfo>> {
    tokens
        .find_one(doc! { "hash": hash.as_str() })
        .await?
        .map(|document| read(&document).map_err(DbError::Corrupt))
        .transpose()
}

impl MongoStore {
    /// `api_tokens`, with the database's read and write concerns.
    fn api_tokens(&self) -> Collection<Document> {
        self.inner.db.collection(TOKENS)
    }
}

#[async_trait]
impl TokenStore for MongoStore {
    async fn create_token(&self, token: &NewToken) -> Result<(), TokenError> {
        token.check()?;
        let tokens = self.api_tokens();
        Ok(bounds::read("a token's creation", insert(&tokens, &token.0)).await?)
    }

    async fn tokens(&self) -> Result<Vec<TokenInfo>, TokenError> {
        let tokens = self.api_tokens();
        Ok(bounds::read("the list of tokens", list(&tokens)).await?)
    }

    async fn revoke_token(&self, name: &str, at: DateTime<Utc>) -> Result<bool, TokenError> {
        let tokens = self.api_tokens();
        Ok(bounds::read("a token's revocation", revoke(&tokens, name, at)).await?)
    }

    async fn token_by_hash(&self, hash: &TokenHash) -> Result<Option<TokenInfo>, TokenError> {
        let tokens = self.api_tokens();
        Ok(bounds::read("a token lookup", by_hash(&tokens, hash)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SubsecRound, TimeZone};

    fn token(role: Role, customer: Option<&str>) -> TokenInfo {
        TokenInfo {
            name: "t".into(),
            role,
            customer: customer.map(str::to_owned),
            hash: TokenHash::of("secret"),
            created_at: Utc
                .with_ymd_and_hms(2024, 5, 1, 9, 30, 0)
                .single()
                .expect("a time")
                .trunc_subsecs(3),
            revoked_at: None,
        }
    }

    #[test]
    fn documents_round_trip() {
        for sent in [
            token(Role::Customer, Some("acme")),
            token(Role::Metrics, None),
        ] {
            let document = document(&sent);
            assert_eq!(document.get("revoked_at"), Some(&Bson::Null));
            assert_eq!(read(&document), Ok(sent));
        }
    }

    #[test]
    fn documents_that_break_the_shape_are_corrupt() {
        let good = document(&token(Role::Agent, None));
        let mut bad = Vec::new();
        for (key, value) in [
            ("customer", Bson::String("acme".into())),
            ("role", Bson::String("root".into())),
            ("hash", Bson::String("ABC".into())),
            ("created_at", Bson::String("2024-05-01".into())),
            ("revoked_at", Bson::Int64(1)),
        ] {
            let mut document = good.clone();
            document.insert(key, value);
            bad.push(document);
        }
        let mut customer = document(&token(Role::Customer, Some("acme")));
        customer.insert("customer", Bson::Null);
        bad.push(customer);
        for document in bad {
            assert!(read(&document).is_err(), "accepted {document}");
        }
    }
}
