//! The store contract, written once: behavioural cases every backend's
//! [`EventStore`] and [`ViewStore`] must pass.
//!
//! Each case is a public async function that panics, with a message naming the
//! broken promise, when the store misbehaves. A backend runs them all with one
//! line in its integration tests:
//!
//! ```ignore
//! async fn make_store() -> Option<(Arc<dyn EventStore>, Arc<dyn ViewStore>, TempDir)> { ... }
//! conformance::store_contract_tests!(make_store);
//! ```
//!
//! `make_store` (any expression callable with no arguments that returns a future)
//! must give a fresh, empty backend for every case, plus a guard of any type
//! that keeps it alive (a temporary folder, a database to drop) until the case
//! ends; or `None` to skip the case when the backend's server is missing
//! (the factory says why; in CI it must fail instead). The expansion is one `#[tokio::test]` per case on a multi-threaded
//! runtime, so the calling crate needs `tokio` with the `macros` and
//! `rt-multi-thread` features.
//!
//! Nothing here knows a backend: cases see only the contracts, and build their
//! events and view changes with the real domain events, envelope and fold. A
//! case takes the whole view store ([`ViewStore`], every role), as it checks a
//! backend; the helpers it calls take the one role they use.
//! The cases pin `docs/projection-store-semantics.md`: `events` (the event
//! store), `views` (slots' rows, checkpoints, scans, the query side) and
//! `operations` (leases, heartbeats, rebuild and swap, dead letters). Lease
//! cases let short leases expire in real time (under a second each).
//!
//! The API tokens' store ([`auth::TokenStore`]) has its own cases (`tokens`),
//! run with one more line, whose factory gives a fresh, empty store and a way
//! to open its data again ([`TokenStores`]):
//!
//! ```ignore
//! async fn make_tokens() -> Option<(conformance::TokenStores, TempDir)> { ... }
//! conformance::token_contract_tests!(make_tokens);
//! ```
//!
//! So has the customers' key store ([`sealing::KeyStore`], `keys`), with a
//! factory of the same shape ([`KeyStores`]):
//!
//! ```ignore
//! async fn make_keys() -> Option<(conformance::KeyStores, TempDir)> { ... }
//! conformance::key_contract_tests!(make_keys);
//! ```
//!
//! The event store's one exception to immutability, `EventStore::redact`
//! (`redact`), is part of the store contract.

mod events;
mod fixtures;
mod keys;
mod operations;
mod redact;
mod tokens;
mod views;

use std::future::Future;
use std::time::Duration;

pub use events::{
    append_returns_what_reads_return, append_then_read_stream, concurrent_appends_to_many_tickets,
    concurrent_appends_to_one_ticket, concurrent_appends_with_one_key_commit_once,
    empty_append_writes_nothing, idempotency_key_finds_its_append, idempotency_key_is_unique,
    multi_event_append_is_atomic, read_all_pages_cover_everything_once,
    read_by_ticket_pages_cover_everything_once, unknown_ticket_has_empty_stream,
    wait_returns_at_once_when_behind, wait_times_out_without_appends, wait_wakes_on_an_append,
    wrong_expected_version_conflicts,
};
pub use fixtures::{CATCH_UP_HOLDER, CATCH_UP_TTL, catch_up, fence, fold_into};
pub use keys::{
    KeyStores, a_customers_key_is_created_once, concurrent_creates_for_one_customer_share_one_key,
    created_keys_are_found_by_customer_and_id, destroying_a_key_is_once_and_forgets_it,
    keys_are_found_by_many_ids_at_once, keys_survive_reopening, scrub_succeeds_and_keeps_the_keys,
};
pub use operations::{
    dead_letters_are_kept_and_counted, heartbeat_records_state_and_last_error,
    leases_fence_every_write, shadow_rebuild_swaps_what_queries_read,
};
pub use redact::{
    redact_rewrites_only_that_events_payload,
    redacting_a_missing_event_is_corrupt_and_changes_nothing,
};
pub use tokens::{
    TokenStores, concurrent_creates_of_one_name_store_one, created_tokens_are_found_by_their_hash,
    malformed_tokens_are_refused, names_are_never_reused, revoking_is_once_and_keeps_the_token,
    tokens_are_listed_by_name_without_secrets, tokens_survive_reopening,
};
pub use views::{
    checkpoints_are_per_projection, commit_writes_views_and_moves_checkpoint,
    empty_store_starts_at_zero, list_filters_and_sorts_page_every_match_once,
    list_filters_by_status, list_is_newest_first_with_ties_by_id, list_pages_cover_every_row_once,
    list_paging_under_concurrent_writes_keeps_unchanged_rows_once,
    live_checkpoint_moves_prompt_watchers, rows_never_go_back_a_version,
    rows_roundtrip_and_counts_follow_the_delta, scan_rows_pages_cover_every_row_once,
    stale_commit_changes_nothing,
};

#[doc(hidden)]
pub use eventstore::EventStore;
#[doc(hidden)]
pub use readmodel::ViewStore;

/// The longest a case may take before it counts as hung.
pub const CASE_TIME_LIMIT: Duration = Duration::from_secs(60);

/// Runs one case, failing it if it hangs (a lost wake-up, a deadlock) rather
/// than stalling the whole test run.
pub async fn within_time_limit(case: &str, run: impl Future<Output = ()>) {
    if tokio::time::timeout(CASE_TIME_LIMIT, run).await.is_err() {
        panic!("{case} did not finish within {CASE_TIME_LIMIT:?}");
    }
}

/// Expands into one `#[tokio::test]` per contract case. See the crate docs.
#[macro_export]
macro_rules! store_contract_tests {
    ($make_store:expr) => {
        $crate::__store_contract_case!($make_store, events, empty_append_writes_nothing);
        $crate::__store_contract_case!($make_store, events, append_then_read_stream);
        $crate::__store_contract_case!($make_store, events, append_returns_what_reads_return);
        $crate::__store_contract_case!($make_store, events, wrong_expected_version_conflicts);
        $crate::__store_contract_case!($make_store, shared, concurrent_appends_to_one_ticket);
        $crate::__store_contract_case!($make_store, shared, concurrent_appends_to_many_tickets);
        $crate::__store_contract_case!($make_store, shared, multi_event_append_is_atomic);
        $crate::__store_contract_case!($make_store, events, read_all_pages_cover_everything_once);
        $crate::__store_contract_case!($make_store, events, wait_times_out_without_appends);
        $crate::__store_contract_case!($make_store, shared, wait_wakes_on_an_append);
        $crate::__store_contract_case!($make_store, events, wait_returns_at_once_when_behind);
        $crate::__store_contract_case!($make_store, events, unknown_ticket_has_empty_stream);
        $crate::__store_contract_case!(
            $make_store,
            events,
            read_by_ticket_pages_cover_everything_once
        );
        $crate::__store_contract_case!($make_store, events, idempotency_key_finds_its_append);
        $crate::__store_contract_case!($make_store, events, idempotency_key_is_unique);
        $crate::__store_contract_case!(
            $make_store,
            shared,
            concurrent_appends_with_one_key_commit_once
        );
        $crate::__store_contract_case!(
            $make_store,
            events,
            redact_rewrites_only_that_events_payload
        );
        $crate::__store_contract_case!(
            $make_store,
            events,
            redacting_a_missing_event_is_corrupt_and_changes_nothing
        );
        $crate::__store_contract_case!($make_store, both, empty_store_starts_at_zero);
        $crate::__store_contract_case!($make_store, both, commit_writes_views_and_moves_checkpoint);
        $crate::__store_contract_case!($make_store, both, stale_commit_changes_nothing);
        $crate::__store_contract_case!($make_store, both, rows_never_go_back_a_version);
        $crate::__store_contract_case!($make_store, both, list_is_newest_first_with_ties_by_id);
        $crate::__store_contract_case!($make_store, both, list_filters_by_status);
        $crate::__store_contract_case!($make_store, both, list_pages_cover_every_row_once);
        $crate::__store_contract_case!(
            $make_store,
            both,
            list_filters_and_sorts_page_every_match_once
        );
        $crate::__store_contract_case!(
            $make_store,
            both,
            list_paging_under_concurrent_writes_keeps_unchanged_rows_once
        );
        $crate::__store_contract_case!($make_store, both, checkpoints_are_per_projection);
        $crate::__store_contract_case!($make_store, both, live_checkpoint_moves_prompt_watchers);
        $crate::__store_contract_case!(
            $make_store,
            both,
            rows_roundtrip_and_counts_follow_the_delta
        );
        $crate::__store_contract_case!($make_store, both, scan_rows_pages_cover_every_row_once);
        $crate::__store_contract_case!($make_store, both, leases_fence_every_write);
        $crate::__store_contract_case!($make_store, both, heartbeat_records_state_and_last_error);
        $crate::__store_contract_case!($make_store, both, shadow_rebuild_swaps_what_queries_read);
        $crate::__store_contract_case!($make_store, both, dead_letters_are_kept_and_counted);
    };
}

/// One case of [`store_contract_tests!`], by what the case takes: the event
/// store by reference, by `Arc` (to share it with spawned tasks), or both stores.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_contract_case {
    ($make_store:expr, events, $case:ident) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let Some((events, _views, _guard)) = ($make_store)().await else {
                return;
            };
            let events: ::std::sync::Arc<dyn $crate::EventStore> = events;
            $crate::within_time_limit(stringify!($case), $crate::$case(&*events)).await;
        }
    };
    ($make_store:expr, shared, $case:ident) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let Some((events, _views, _guard)) = ($make_store)().await else {
                return;
            };
            let events: ::std::sync::Arc<dyn $crate::EventStore> = events;
            $crate::within_time_limit(stringify!($case), $crate::$case(events)).await;
        }
    };
    ($make_store:expr, both, $case:ident) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let Some((events, views, _guard)) = ($make_store)().await else {
                return;
            };
            let events: ::std::sync::Arc<dyn $crate::EventStore> = events;
            let views: ::std::sync::Arc<dyn $crate::ViewStore> = views;
            $crate::within_time_limit(stringify!($case), $crate::$case(&*events, &*views)).await;
        }
    };
}

/// Expands into one `#[tokio::test]` per case of the token store contract.
/// `$make_tokens` (callable with no arguments, returning a future) gives
/// `Option<(TokenStores, guard)>`: a fresh, empty store for every case and a
/// guard that keeps it alive, or `None` to skip the case, as for
/// [`store_contract_tests!`].
#[macro_export]
macro_rules! token_contract_tests {
    ($make_tokens:expr) => {
        $crate::__token_contract_case!($make_tokens, created_tokens_are_found_by_their_hash);
        $crate::__token_contract_case!($make_tokens, tokens_are_listed_by_name_without_secrets);
        $crate::__token_contract_case!($make_tokens, names_are_never_reused);
        $crate::__token_contract_case!($make_tokens, concurrent_creates_of_one_name_store_one);
        $crate::__token_contract_case!($make_tokens, revoking_is_once_and_keeps_the_token);
        $crate::__token_contract_case!($make_tokens, malformed_tokens_are_refused);
        $crate::__token_contract_case!($make_tokens, tokens_survive_reopening);
    };
}

/// One case of [`token_contract_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __token_contract_case {
    ($make_tokens:expr, $case:ident) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let Some((tokens, _guard)) = ($make_tokens)().await else {
                return;
            };
            let tokens: $crate::TokenStores = tokens;
            $crate::within_time_limit(stringify!($case), $crate::$case(&tokens)).await;
        }
    };
}

/// Expands into one `#[tokio::test]` per case of the key store contract.
/// `$make_keys` (callable with no arguments, returning a future) gives
/// `Option<(KeyStores, guard)>`: a fresh, empty store for every case and a
/// guard that keeps it alive, or `None` to skip the case, as for
/// [`store_contract_tests!`].
#[macro_export]
macro_rules! key_contract_tests {
    ($make_keys:expr) => {
        $crate::__key_contract_case!($make_keys, created_keys_are_found_by_customer_and_id);
        $crate::__key_contract_case!($make_keys, a_customers_key_is_created_once);
        $crate::__key_contract_case!($make_keys, keys_are_found_by_many_ids_at_once);
        $crate::__key_contract_case!(
            $make_keys,
            concurrent_creates_for_one_customer_share_one_key
        );
        $crate::__key_contract_case!($make_keys, destroying_a_key_is_once_and_forgets_it);
        $crate::__key_contract_case!($make_keys, keys_survive_reopening);
        $crate::__key_contract_case!($make_keys, scrub_succeeds_and_keeps_the_keys);
    };
}

/// One case of [`key_contract_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __key_contract_case {
    ($make_keys:expr, $case:ident) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let Some((keys, _guard)) = ($make_keys)().await else {
                return;
            };
            let keys: $crate::KeyStores = keys;
            $crate::within_time_limit(stringify!($case), $crate::$case(&keys)).await;
        }
    };
}
