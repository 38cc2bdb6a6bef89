//! `ticketd erase-customer`: a customer's right to erasure, from the command
//! line (the same as `DELETE /customers/{customer}`; see `write::erasure`).

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use write::CommandContext;
use write::erasure::{Eraser, ErasureReport};

use crate::{Backend, StoreUrl};

/// How long an erasure waits for the read models to show it before it
/// scrubs the files; a separate projector may take this long to get there.
pub const VIEWS_WAIT: Duration = Duration::from_secs(30);

/// The erasure services over an opened backend.
pub fn eraser(backend: &Backend) -> Eraser {
    Eraser {
        commands: Arc::new(write::CommandService::new(backend.events.clone())),
        raw: backend.raw_events.clone(),
        keyring: backend.keyring.clone(),
        keys: backend.keys.clone(),
        views: backend.views.clone(),
    }
}

/// Erases `customer` after asking on the terminal, unless `yes`.
pub async fn erase_customer(store: &StoreUrl, customer: &str, yes: bool) -> anyhow::Result<()> {
    let customer = customer.trim();
    if customer.is_empty() {
        bail!("the customer to erase is empty");
    }
    if !yes && !confirmed(customer)? {
        bail!("nothing erased: not confirmed");
    }
    let backend = Backend::open(store).await?;
    let context = CommandContext {
        actor: Some("ticketd erase-customer".into()),
        ..CommandContext::default()
    };
    let report = eraser(&backend)
        .erase(customer, context, VIEWS_WAIT)
        .await
        .context("erasing the customer")?;
    print!("{}", describe(&report));
    Ok(())
}

fn confirmed(customer: &str) -> anyhow::Result<bool> {
    eprint!(
        "Erase customer {customer:?}? Its name, subjects, messages and notes become \
         unreadable for good, in every ticket and view; ids, statuses and counts stay. \
         Type the customer's name to go on: "
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the confirmation")?;
    Ok(answer.trim() == customer)
}

/// The report, a line per fact.
pub fn describe(report: &ErasureReport) -> String {
    let mut text = format!(
        "tickets: {} ({} erased now, {} erased before)\n",
        report.tickets,
        report.newly_erased,
        report.tickets - report.newly_erased
    );
    text.push_str(&format!(
        "events stored in clear, rewritten: {}\n",
        report.rewritten
    ));
    text.push_str(if report.key_destroyed {
        "key: destroyed\n"
    } else {
        "key: none (no ticket of this customer was sealed, or it was destroyed before)\n"
    });
    text.push_str(if report.views_scrubbed {
        "views: rewritten; store files scrubbed\n"
    } else {
        "views: not rewritten yet (is a projector running?); they will be when it reaches the \
         erasure, and the files are scrubbed at the next erasure\n"
    });
    text
}
