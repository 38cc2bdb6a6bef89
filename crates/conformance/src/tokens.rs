//! The token store contract ([`auth::TokenStore`]): what every backend keeps
//! of an API token, how it is found, listed and revoked, and that a name is
//! never reused. A backend runs these cases with
//! [`token_contract_tests!`](crate::token_contract_tests), giving each case a
//! fresh, empty store and a way to open its data again ([`TokenStores`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use auth::{NewToken, Role, Secret, TokenError, TokenHash, TokenInfo, TokenStore};
use chrono::{DateTime, Utc};

use crate::fixtures::{at, kept};

type Reopened = Pin<Box<dyn Future<Output = Arc<dyn TokenStore>> + Send>>;

/// What a token case gets from a backend: a fresh, empty store, and how to
/// open the same data afresh, as a restart or another process would (the
/// same file, the same database) with nothing shared in memory.
pub struct TokenStores {
    pub store: Arc<dyn TokenStore>,
    reopen: Box<dyn Fn() -> Reopened + Send + Sync>,
}

impl std::fmt::Debug for TokenStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStores")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl TokenStores {
    /// `store`, and `reopen` opening its data again (panicking if it cannot).
    pub fn new<S, R, F>(store: S, reopen: R) -> TokenStores
    where
        S: TokenStore + 'static,
        R: Fn() -> F + Send + Sync + 'static,
        F: Future<Output = S> + Send + 'static,
    {
        TokenStores {
            store: Arc::new(store),
            reopen: Box::new(move || {
                let opened = reopen();
                Box::pin(async move { Arc::new(opened.await) as Arc<dyn TokenStore> })
            }),
        }
    }

    /// A new store on the same data.
    pub async fn reopen(&self) -> Arc<dyn TokenStore> {
        (self.reopen)().await
    }
}

/// Issues a token created at `at(seconds)` (a time with nanoseconds, so that
/// the store's precision shows), failing the case if the request is refused.
fn issue(name: &str, role: Role, customer: Option<&str>, seconds: i64) -> (NewToken, Secret) {
    NewToken::issue(name, role, customer, at(seconds))
        .unwrap_or_else(|e| panic!("issuing token {name:?}: {e}"))
}

async fn create(store: &dyn TokenStore, token: &NewToken) {
    store
        .create_token(token)
        .await
        .unwrap_or_else(|e| panic!("creating token {:?}: {e}", token.0.name));
}

async fn by_hash(store: &dyn TokenStore, hash: &TokenHash) -> Option<TokenInfo> {
    store
        .token_by_hash(hash)
        .await
        .unwrap_or_else(|e| panic!("looking up hash {}: {e}", hash.as_str()))
}

async fn list(store: &dyn TokenStore) -> Vec<TokenInfo> {
    store.tokens().await.expect("tokens")
}

async fn revoke(store: &dyn TokenStore, name: &str, at: DateTime<Utc>) -> bool {
    store
        .revoke_token(name, at)
        .await
        .unwrap_or_else(|e| panic!("revoking token {name:?}: {e}"))
}

/// `read` is `sent` as stored: every field exact, times to the store's
/// precision (the millisecond at least, truncated).
fn assert_stored(read: &TokenInfo, sent: &TokenInfo, what: &str) {
    let same_times = kept(read.created_at, sent.created_at)
        && match (read.revoked_at, sent.revoked_at) {
            (Some(read), Some(sent)) => kept(read, sent),
            (None, None) => true,
            _ => false,
        };
    let times = TokenInfo {
        created_at: sent.created_at,
        revoked_at: sent.revoked_at,
        ..read.clone()
    };
    assert!(
        same_times && &times == sent,
        "{what}: read {read:?}, stored {sent:?}"
    );
}

/// A created token is found by the hash of its secret with every field as
/// created, speaks for its principal, and a hash no token has finds nothing.
pub async fn created_tokens_are_found_by_their_hash(tokens: &TokenStores) {
    let store = &*tokens.store;
    assert_eq!(
        by_hash(store, &TokenHash::of("tkt_nobody")).await,
        None,
        "an empty store finds no token"
    );
    let (web, web_secret) = issue("web shop", Role::Customer, Some("acme"), 0);
    let (ops, ops_secret) = issue("ops", Role::Agent, None, 1);
    create(store, &web).await;
    create(store, &ops).await;
    for (token, secret) in [(&web, &web_secret), (&ops, &ops_secret)] {
        let found = by_hash(store, &TokenHash::of(secret.expose()))
            .await
            .unwrap_or_else(|| panic!("token {:?} is not found by its hash", token.0.name));
        assert_stored(&found, &token.0, "found by hash");
        assert_eq!(
            found.principal(),
            token.0.principal(),
            "an unrevoked token speaks for its principal"
        );
    }
    let principal = by_hash(store, &web.0.hash)
        .await
        .and_then(|token| token.principal())
        .expect("the customer token's principal");
    assert_eq!(
        principal.customer_scope(),
        Some("acme"),
        "a customer token keeps its customer"
    );
    assert_eq!(
        by_hash(store, &TokenHash::of(&format!("{}x", web_secret.expose()))).await,
        None,
        "a hash no token has finds nothing"
    );
}

/// `tokens()` lists every token, revoked ones too, ordered by name (byte
/// order of the UTF-8 text, as Rust orders strings), each with the hash of
/// its secret and never the secret.
pub async fn tokens_are_listed_by_name_without_secrets(tokens: &TokenStores) {
    let store = &*tokens.store;
    assert!(list(store).await.is_empty(), "an empty store lists nothing");
    let issued = [
        issue("zeta", Role::Metrics, None, 0),
        issue("Alpha", Role::Admin, None, 1),
        issue("émile", Role::Customer, Some("émile & co"), 2),
        issue("beta", Role::Agent, None, 3),
        issue("beta-2", Role::Customer, Some("acme"), 4),
    ];
    for (token, _) in &issued {
        create(store, token).await;
    }
    assert!(revoke(store, "beta", at(10)).await, "beta is revoked");
    let listed = list(store).await;
    let mut expected: Vec<TokenInfo> = issued.iter().map(|(token, _)| token.0.clone()).collect();
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(beta) = expected.iter_mut().find(|token| token.name == "beta") {
        beta.revoked_at = Some(at(10));
    }
    let names = |tokens: &[TokenInfo]| tokens.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&listed),
        names(&expected),
        "every token, revoked ones too, ordered by name"
    );
    for (read, sent) in listed.iter().zip(&expected) {
        assert_stored(read, sent, "listed");
    }
    for (token, secret) in &issued {
        let shown = format!("{listed:?}");
        assert!(
            !shown.contains(secret.expose()),
            "the list shows token {:?}'s secret",
            token.0.name
        );
        assert!(
            listed
                .iter()
                .any(|read| read.hash.matches(&TokenHash::of(secret.expose()))),
            "the list has token {:?}'s hash",
            token.0.name
        );
    }
}

/// A name is never reused: a second token with a stored name (revoked or
/// not, or the very same token again) is `NameTaken`, and changes nothing.
pub async fn names_are_never_reused(tokens: &TokenStores) {
    let store = &*tokens.store;
    let (first, first_secret) = issue("ops", Role::Agent, None, 0);
    create(store, &first).await;
    let name_taken = |outcome: Result<(), TokenError>, what: &str| match outcome {
        Err(TokenError::NameTaken(name)) => assert_eq!(name, "ops", "{what}: the name"),
        other => panic!("{what}: expected NameTaken, got {other:?}"),
    };
    let (second, _) = issue("ops", Role::Admin, None, 1);
    name_taken(store.create_token(&second).await, "another token named ops");
    name_taken(
        store.create_token(&first).await,
        "the same token created again",
    );
    assert!(revoke(store, "ops", at(2)).await, "ops is revoked");
    let (third, _) = issue("ops", Role::Agent, None, 3);
    name_taken(
        store.create_token(&third).await,
        "a token named as a revoked one",
    );
    for refused in [&second, &third] {
        assert_eq!(
            by_hash(store, &refused.0.hash).await,
            None,
            "a refused token is not stored"
        );
    }
    let listed = list(store).await;
    assert_eq!(listed.len(), 1, "one token named ops: {listed:?}");
    let stored = TokenInfo {
        revoked_at: Some(at(2)),
        ..first.0.clone()
    };
    assert_stored(&listed[0], &stored, "the first ops, revoked");
    assert!(
        listed[0]
            .hash
            .matches(&TokenHash::of(first_secret.expose())),
        "the stored ops is the first one"
    );
}

/// Concurrent creates of one name store exactly one token; every other
/// create is `NameTaken`.
pub async fn concurrent_creates_of_one_name_store_one(tokens: &TokenStores) {
    const WRITERS: usize = 8;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&tokens.store);
        let (token, _) = issue("shared", Role::Agent, None, 0);
        tasks.spawn(async move {
            let outcome = store.create_token(&token).await;
            (writer, token, outcome)
        });
    }
    let mut created = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (writer, token, outcome) = joined.expect("a create panicked");
        match outcome {
            Ok(()) => created.push(token),
            Err(TokenError::NameTaken(name)) => assert_eq!(name, "shared"),
            Err(e) => panic!("writer {writer}: {e}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one create of `shared` succeeds");
    let listed = list(&*tokens.store).await;
    assert_eq!(listed.len(), 1, "one token stored: {listed:?}");
    assert_stored(&listed[0], &created[0].0, "the one that succeeded");
}

/// Revoking answers true once, then false; a revoked token keeps its row,
/// is still found by its hash with `revoked_at` set and speaks for no one;
/// other tokens are untouched, and an unknown name revokes nothing.
pub async fn revoking_is_once_and_keeps_the_token(tokens: &TokenStores) {
    let store = &*tokens.store;
    let (gone, _) = issue("gone", Role::Customer, Some("acme"), 0);
    let (kept_token, _) = issue("kept", Role::Admin, None, 1);
    create(store, &gone).await;
    create(store, &kept_token).await;
    assert!(
        !revoke(store, "nobody", at(5)).await,
        "an unknown name revokes nothing"
    );
    assert!(revoke(store, "gone", at(5)).await, "the first revoke");
    assert!(
        !revoke(store, "gone", at(6)).await,
        "a second revoke finds it revoked"
    );
    let found = by_hash(store, &gone.0.hash)
        .await
        .expect("a revoked token is still found by its hash");
    let revoked = TokenInfo {
        revoked_at: Some(at(5)),
        ..gone.0.clone()
    };
    assert_stored(&found, &revoked, "revoked, at the first revoke's time");
    assert_eq!(found.principal(), None, "a revoked token speaks for no one");
    let other = by_hash(store, &kept_token.0.hash)
        .await
        .expect("the other token");
    assert_stored(&other, &kept_token.0, "the other token is untouched");
    assert!(other.principal().is_some());
    assert_eq!(list(store).await.len(), 2, "revoking keeps the token's row");
    assert!(!revoke(store, "nobody", at(7)).await);
}

/// A token the store must not hold is refused (`Invalid`) and nothing is
/// stored: a customer token without a customer (it would be scoped to no
/// customer), another role's token with one, and a token revoked already.
pub async fn malformed_tokens_are_refused(tokens: &TokenStores) {
    let store = &*tokens.store;
    let (customer, _) = issue("web", Role::Customer, Some("acme"), 0);
    let (agent, _) = issue("ops", Role::Agent, None, 0);
    let malformed = [
        TokenInfo {
            customer: None,
            ..customer.0.clone()
        },
        TokenInfo {
            customer: Some(String::new()),
            ..customer.0.clone()
        },
        TokenInfo {
            customer: Some("acme".into()),
            ..agent.0.clone()
        },
        TokenInfo {
            revoked_at: Some(at(1)),
            ..agent.0.clone()
        },
    ];
    for token in malformed {
        match store.create_token(&NewToken(token.clone())).await {
            Err(TokenError::Invalid(_)) => {}
            other => panic!("{token:?}: expected Invalid, got {other:?}"),
        }
    }
    assert!(list(store).await.is_empty(), "nothing is stored");
    create(store, &customer).await;
    create(store, &agent).await;
}

/// Tokens and revocations are in the store's data, not in the instance:
/// a store opened afresh on the same data finds and lists them as written.
pub async fn tokens_survive_reopening(tokens: &TokenStores) {
    let (web, web_secret) = issue("web", Role::Customer, Some("acme"), 0);
    let (ops, _) = issue("ops", Role::Agent, None, 1);
    create(&*tokens.store, &web).await;
    create(&*tokens.store, &ops).await;
    assert!(revoke(&*tokens.store, "ops", at(2)).await);
    let before = list(&*tokens.store).await;
    let reopened = tokens.reopen().await;
    assert_eq!(list(&*reopened).await, before, "the same tokens");
    let found = by_hash(&*reopened, &TokenHash::of(web_secret.expose()))
        .await
        .expect("web, by its hash");
    assert_stored(&found, &web.0, "web, reopened");
    let revoked = by_hash(&*reopened, &ops.0.hash)
        .await
        .expect("ops, by its hash");
    assert_eq!(revoked.principal(), None, "ops is still revoked");
    assert!(
        !revoke(&*reopened, "ops", at(3)).await,
        "ops stays revoked once"
    );
    match reopened.create_token(&ops).await {
        Err(TokenError::NameTaken(_)) => {}
        other => panic!("ops's name is still taken: {other:?}"),
    }
}
