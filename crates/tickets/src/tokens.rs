//! `ticketd token create|list|revoke`: API tokens, managed from the command
//! line against the store every `ticketd` on it reads them from.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use auth::{NewToken, Role, TokenError};
use chrono::{SecondsFormat, Utc};

use crate::table::Table;
use crate::{Backend, StoreUrl};

/// How `ticketd` authenticates requests (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Every request is served, as anyone; `X-Actor` names the actor.
    Off,
    /// Every route but `/healthz` and `/openapi.json` needs a bearer token.
    Token,
}

impl AuthMode {
    /// The mode to run with: the one asked for, else `off` on a loopback
    /// address (the quick start) and `token` on any other. `off` on a
    /// non-loopback address needs `insecure_no_auth`.
    pub fn resolve(
        asked: Option<AuthMode>,
        listen: SocketAddr,
        insecure_no_auth: bool,
    ) -> anyhow::Result<AuthMode> {
        let loopback = listen.ip().is_loopback();
        let mode = asked.unwrap_or(if loopback {
            AuthMode::Off
        } else {
            AuthMode::Token
        });
        if mode == AuthMode::Off && !loopback && !insecure_no_auth {
            bail!(
                "refusing to serve {listen} without authentication: anyone who can reach it \
                 could read and change every ticket. Use --auth token (create a first admin \
                 token with `ticketd token create --role admin --name NAME`), or add \
                 --insecure-no-auth if something in front of ticketd authenticates requests"
            );
        }
        Ok(mode)
    }
}

/// `token create`: stores a new token and prints its secret once, as the
/// last line of stdout.
pub async fn create(
    store: &StoreUrl,
    role: Role,
    name: &str,
    customer: Option<&str>,
) -> anyhow::Result<()> {
    let backend = Backend::open(store).await?;
    let (token, secret) = NewToken::issue(name, role, customer, Utc::now())?;
    match backend.tokens.create_token(&token).await {
        Ok(()) => {}
        Err(error @ TokenError::NameTaken(_)) => return Err(error.into()),
        Err(error) => return Err(error).context("storing the token"),
    }
    let scope = match &token.0.customer {
        Some(customer) => format!(" for customer {customer:?}"),
        None => String::new(),
    };
    println!(
        "created {role} token {:?}{scope}; its secret, shown only now (the store keeps a hash):",
        token.0.name
    );
    println!("{}", secret.expose());
    Ok(())
}

/// `token list`: every token, revoked ones included; never a secret.
pub async fn list(store: &StoreUrl) -> anyhow::Result<()> {
    let backend = Backend::open(store).await?;
    let tokens = backend
        .tokens
        .tokens()
        .await
        .context("reading the tokens")?;
    if tokens.is_empty() {
        println!("no tokens");
        return Ok(());
    }
    let time = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut table = Table::new(&["NAME", "ROLE", "CUSTOMER", "CREATED", "REVOKED"]);
    for token in tokens {
        table.row([
            token.name,
            token.role.name().to_owned(),
            token.customer.unwrap_or_default(),
            time(token.created_at),
            token.revoked_at.map(time).unwrap_or_default(),
        ]);
    }
    println!("{}", table.render());
    Ok(())
}

/// `token revoke NAME`: every `ticketd` on the store refuses it within
/// `auth::REVOCATION_DELAY`.
pub async fn revoke(store: &StoreUrl, name: &str) -> anyhow::Result<()> {
    let backend = Backend::open(store).await?;
    let revoked = backend
        .tokens
        .revoke_token(name, Utc::now())
        .await
        .context("revoking the token")?;
    if !revoked {
        bail!("no unrevoked token is named {name:?} (`ticketd token list` shows them)");
    }
    println!(
        "revoked {name:?}: every ticketd on this store refuses it within {}s",
        auth::REVOCATION_DELAY.as_secs()
    );
    Ok(())
}
