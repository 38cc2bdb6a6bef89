//! The schema: the JSON files in `migrations/mongodb/` at the workspace root,
//! compiled in, and the runner that applies each exactly once.
//!
//! A migration file is `{"description": ..., "commands": [...]}`: database
//! commands run in order, verbatim (`create` with a validator, `createIndexes`,
//! `collMod`, seeding `update`s, `delete`s ...). Each applied migration is
//! recorded in `schema_migrations` (`_id` = version, so the version is unique)
//! with a checksum of its text, which catches a migration edited after it was
//! applied.
//!
//! Concurrent starters: a starter first inserts a claim document for the
//! version (`state: "applying"`); the unique `_id` lets exactly one claim
//! succeed. The others wait until the claim turns `"applied"`. A claim left by
//! a starter that died is taken over once it is [`STALE_CLAIM`] old; that is
//! safe because every command a migration may use is idempotent (`create` of an
//! existing collection answers NamespaceExists, which the runner turns into a
//! `collMod` with the same validator; `createIndexes` of an existing index is
//! a no-op; an `update` may only upsert with `$setOnInsert`, which changes
//! nothing the second time; a `delete` of what is gone deletes nothing).
//!
//! `update` and `delete` answer `ok: 1` even when a document fails (a
//! validator, a duplicate key): the runner reads their `writeErrors` and
//! `writeConcernError` and fails the migration on any.
//!
//! Servers without `create`/`collMod` (jongodb answers CommandNotFound) get
//! their collections implicitly on first write and no validators; the runner
//! says so once and goes on. A real server never takes that path.

use std::time::Duration;

use chrono::Utc;
use mongodb::Database;
use mongodb::bson::{Document, doc};
use serde::Deserialize;

use crate::codec::{self, Fields};
use crate::error::{OpenError, code, is_duplicate_key, server_code};
pub use migration_files::AppliedMigration;
use migration_files::Migration;

/// In version order: every file in `migrations/mongodb/`, listed at build time
/// (see `migration_files`), so a new file there is all a new migration takes.
const MIGRATIONS: &[Migration] = migration_files::MONGODB;

/// The commands a migration may use: each is safe to run twice (see the
/// module docs; `update` only as an upsert with `$setOnInsert`).
const IDEMPOTENT_VERBS: &[&str] = &["create", "createIndexes", "collMod", "update", "delete"];

/// The ledger collection: the one piece of schema outside the migration files.
pub(crate) const LEDGER: &str = "schema_migrations";

/// A claim older than this is taken to belong to a starter that died.
pub const STALE_CLAIM: Duration = Duration::from_secs(60);

/// How often a waiting starter looks at another starter's claim.
const CLAIM_POLL: Duration = Duration::from_millis(100);

const APPLYING: &str = "applying";
const APPLIED: &str = "applied";

/// The migrations this build knows, as (version, name), in order.
pub fn migrations() -> impl Iterator<Item = (u32, &'static str)> {
    MIGRATIONS.iter().map(|m| (m.version, m.name))
}

#[derive(Deserialize)]
struct MigrationFile {
    #[allow(dead_code, reason = "documentation for readers of the file")]
    description: String,
    commands: Vec<Document>,
}

/// The migration's commands, each checked to be safe to run twice.
fn commands(migration: &Migration) -> Result<Vec<Document>, OpenError> {
    let file: MigrationFile =
        serde_json::from_str(migration.text).map_err(|e| OpenError::BadMigration {
            name: migration.name.to_owned(),
            reason: e.to_string(),
        })?;
    for command in &file.commands {
        is_idempotent(command).map_err(|reason| OpenError::BadMigration {
            name: migration.name.to_owned(),
            reason,
        })?;
    }
    Ok(file.commands)
}

/// One `migrate` run: remembers whether the server lacking `create` was
/// already reported.
struct Runner<'a> {
    db: &'a Database,
    told_no_create: bool,
}

/// Applies every migration not yet applied, in order; refuses a database whose
/// applied migrations differ from this build's. Returns the versions this call
/// applied (empty when the schema was already current).
pub(crate) async fn apply(db: &Database) -> Result<Vec<u32>, OpenError> {
    let mut runner = Runner {
        db,
        told_no_create: false,
    };
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        if runner.apply_one(migration).await? {
            applied.push(migration.version);
        }
    }
    runner.refuse_unknown().await?;
    Ok(applied)
}

impl Runner<'_> {
    fn failed(&self, step: String) -> impl FnOnce(mongodb::error::Error) -> OpenError {
        let database = self.db.name().to_owned();
        move |source| OpenError::Mongo {
            database,
            step,
            source: Box::new(source),
        }
    }

    /// Applies `migration` unless it is applied already; says whether it did.
    async fn apply_one(&mut self, migration: &Migration) -> Result<bool, OpenError> {
        let ledger = self.db.collection::<Document>(LEDGER);
        let current = migration.checksum();
        let commands = commands(migration)?;
        let waiting_since = tokio::time::Instant::now();
        loop {
            let recorded = ledger
                .find_one(doc! { "_id": i64::from(migration.version) })
                .await
                .map_err(self.failed(format!("checking migration {}", migration.name)))?;
            let Some(recorded) = recorded else {
                let claim = doc! {
                    "_id": i64::from(migration.version),
                    "name": migration.name,
                    "checksum": &current,
                    "state": APPLYING,
                    "claimed_at": codec::date(Utc::now()),
                };
                match ledger.insert_one(claim).await {
                    Ok(_) => break,
                    // Another starter claimed it first: look again.
                    Err(e) if is_duplicate_key(&e) => continue,
                    Err(e) => {
                        return Err(self
                            .failed(format!("claiming migration {}", migration.name))(
                            e
                        ));
                    }
                }
            };
            let fields = Fields::new(LEDGER, &recorded);
            let bad = |reason: String| OpenError::BadLedger {
                database: self.db.name().to_owned(),
                reason,
            };
            if fields.str("state").map_err(bad)? == APPLIED {
                let recorded = fields.str("checksum").map_err(bad)?;
                if recorded != current {
                    return Err(OpenError::MigrationEdited {
                        database: self.db.name().to_owned(),
                        version: migration.version,
                        name: migration.name.to_owned(),
                        recorded: recorded.to_owned(),
                        current,
                    });
                }
                return Ok(false);
            }
            let claimed_at = fields.time("claimed_at").map_err(bad)?;
            let age = Utc::now()
                .signed_duration_since(claimed_at)
                .to_std()
                .unwrap_or_default();
            if age >= STALE_CLAIM {
                let taken = ledger
                    .update_one(
                        doc! {
                            "_id": i64::from(migration.version),
                            "state": APPLYING,
                            "claimed_at": codec::date(claimed_at),
                        },
                        doc! { "$set": { "claimed_at": codec::date(Utc::now()), "checksum": &current } },
                    )
                    .await
                    .map_err(self.failed(format!("taking over migration {}", migration.name)))?;
                if taken.matched_count == 1 {
                    tracing::warn!(
                        database = self.db.name(),
                        migration = migration.name,
                        claimed_at = %claimed_at,
                        "took over a stale migration claim"
                    );
                    break;
                }
                continue;
            }
            if waiting_since.elapsed() > STALE_CLAIM * 2 {
                return Err(OpenError::MigrationStuck {
                    database: self.db.name().to_owned(),
                    version: migration.version,
                    name: migration.name.to_owned(),
                    since: claimed_at.to_rfc3339(),
                });
            }
            tokio::time::sleep(CLAIM_POLL).await;
        }

        for command in commands {
            self.run(migration, command).await?;
        }
        ledger
            .update_one(
                doc! { "_id": i64::from(migration.version) },
                doc! { "$set": { "state": APPLIED, "applied_at": codec::date(Utc::now()) } },
            )
            .await
            .map_err(self.failed(format!("recording migration {}", migration.name)))?;
        tracing::info!(
            database = self.db.name(),
            migration = migration.name,
            "applied migration"
        );
        Ok(true)
    }

    async fn run(&mut self, migration: &Migration, command: Document) -> Result<(), OpenError> {
        let Some((verb, target)) = command.iter().next().map(|(k, v)| (k.clone(), v.clone()))
        else {
            return Err(OpenError::BadMigration {
                name: migration.name.to_owned(),
                reason: "an empty command".into(),
            });
        };
        let step = format!("migration {}: {verb} {target}", migration.name);
        let result = self.db.run_command(command.clone()).await;
        let error = match result {
            Ok(reply) => {
                return match write_failures(&reply) {
                    None => Ok(()),
                    Some(reason) => Err(OpenError::MigrationWrite {
                        database: self.db.name().to_owned(),
                        step,
                        reason,
                    }),
                };
            }
            Err(error) => error,
        };
        match (verb.as_str(), server_code(&error)) {
            // The collection exists (created implicitly, or by a starter whose
            // claim was taken over): install the validator on it instead.
            ("create", Some(code::NAMESPACE_EXISTS)) => {
                let Some(collmod) = collmod_for(&command) else {
                    return Ok(());
                };
                match self.db.run_command(collmod).await {
                    Ok(_) => Ok(()),
                    Err(e) if server_code(&e) == Some(code::COMMAND_NOT_FOUND) => {
                        self.no_create();
                        Ok(())
                    }
                    Err(e) => Err(self.failed(format!("{step} (collMod)"))(e)),
                }
            }
            ("create" | "collMod", Some(code::COMMAND_NOT_FOUND)) => {
                self.no_create();
                Ok(())
            }
            _ => Err(self.failed(step)(error)),
        }
    }

    fn no_create(&mut self) {
        if !self.told_no_create {
            self.told_no_create = true;
            tracing::warn!(
                database = self.db.name(),
                "server does not support create; collection validators not installed"
            );
        }
    }

    /// A migration recorded in the database but missing here means a newer
    /// build wrote the schema; running against it could misread or miswrite.
    async fn refuse_unknown(&self) -> Result<(), OpenError> {
        let newest = MIGRATIONS.last().map_or(0, |m| m.version);
        let unknown = self
            .db
            .collection::<Document>(LEDGER)
            .find_one(doc! { "_id": { "$gt": i64::from(newest) } })
            .sort(doc! { "_id": 1 })
            .await
            .map_err(self.failed("checking for unknown migrations".into()))?;
        let Some(unknown) = unknown else {
            return Ok(());
        };
        let fields = Fields::new(LEDGER, &unknown);
        Err(OpenError::UnknownMigration {
            database: self.db.name().to_owned(),
            version: fields
                .i64("_id")
                .ok()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(u32::MAX),
            name: fields.str("name").unwrap_or("(unnamed)").to_owned(),
        })
    }
}

/// What a write command's reply says failed, if anything: its `writeErrors`
/// and `writeConcernError` (the command itself answered `ok: 1`).
fn write_failures(reply: &Document) -> Option<String> {
    let mut failures: Vec<String> = reply
        .get_array("writeErrors")
        .map(|errors| errors.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    if let Ok(concern) = reply.get_document("writeConcernError") {
        failures.push(concern.to_string());
    }
    (!failures.is_empty()).then(|| failures.join("; "))
}

/// Whether a command keeps to what a migration may run (see
/// [`IDEMPOTENT_VERBS`]): an `update` only upserts with `$setOnInsert`.
fn is_idempotent(command: &Document) -> Result<(), String> {
    let verb = command.keys().next().ok_or("an empty command")?;
    if !IDEMPOTENT_VERBS.contains(&verb.as_str()) {
        return Err(format!(
            "`{verb}` is not a command the runner knows to be idempotent"
        ));
    }
    if verb != "update" {
        return Ok(());
    }
    let updates = command
        .get_array("updates")
        .map_err(|e| format!("updates: {e}"))?;
    for update in updates {
        let update = update.as_document().ok_or("an update is not a document")?;
        let upsert = update.get_bool("upsert").unwrap_or(false);
        let operators: Vec<&String> = update
            .get_document("u")
            .map_err(|e| format!("u: {e}"))?
            .keys()
            .collect();
        if !upsert || operators != ["$setOnInsert"] {
            return Err(format!(
                "an update must upsert with `$setOnInsert` only, not {operators:?} (upsert: {upsert})"
            ));
        }
    }
    Ok(())
}

/// The `collMod` that gives an existing collection what `create` would have.
fn collmod_for(create: &Document) -> Option<Document> {
    let mut collmod = Document::new();
    collmod.insert("collMod", create.get("create")?.clone());
    let mut any = false;
    for key in ["validator", "validationLevel", "validationAction"] {
        if let Some(value) = create.get(key) {
            collmod.insert(key, value.clone());
            any = true;
        }
    }
    any.then_some(collmod)
}

/// The applied migrations, in version order (claims still applying left out).
pub(crate) async fn applied(db: &Database) -> Result<Vec<AppliedMigration>, String> {
    use futures::TryStreamExt;
    let documents: Vec<Document> = db
        .collection::<Document>(LEDGER)
        .find(doc! { "state": APPLIED })
        .sort(doc! { "_id": 1 })
        .await
        .map_err(|e| format!("{LEDGER}: {e}"))?
        .try_collect()
        .await
        .map_err(|e| format!("{LEDGER}: {e}"))?;
    documents
        .iter()
        .map(|document| {
            let fields = Fields::new(LEDGER, document);
            let version = fields.i64("_id")?;
            Ok(AppliedMigration {
                version: u32::try_from(version)
                    .map_err(|_| fields.corrupt(format!("version {version} is out of range")))?,
                name: fields.str("name")?.to_owned(),
                checksum: fields.str("checksum")?.to_owned(),
                applied_at: fields.time("applied_at")?,
            })
        })
        .collect()
}

/// Whether `value` names a collection: the target of a command.
#[cfg(test)]
fn target(command: &Document) -> Option<&str> {
    match command.iter().next()?.1 {
        mongodb::bson::Bson::String(name) => Some(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_the_folder_is_listed_in_order() {
        let folder =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/mongodb");
        migration_files::check_folder(&folder, "json", MIGRATIONS).unwrap();
    }

    #[test]
    fn every_migration_parses_into_known_commands_in_file_order() {
        for migration in MIGRATIONS {
            let commands = commands(migration).expect("the file parses");
            assert!(!commands.is_empty(), "{} has commands", migration.name);
            for command in &commands {
                if let Err(why) = is_idempotent(command) {
                    panic!("{}: {why}", migration.name);
                }
                assert!(target(command).is_some(), "{command} names its collection");
            }
        }
        // Index keys are ordered: the file's order must survive parsing.
        let views = commands(&MIGRATIONS[1]).expect("parses");
        let indexes = views
            .iter()
            .find(|c| c.get_str("createIndexes").ok() == Some("ticket_list"))
            .expect("the list's indexes");
        let keys: Vec<Vec<String>> = indexes
            .get_array("indexes")
            .expect("indexes")
            .iter()
            .map(|index| {
                index
                    .as_document()
                    .and_then(|i| i.get_document("key").ok())
                    .expect("a key")
                    .keys()
                    .cloned()
                    .collect()
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                vec!["created_at".to_owned(), "_id".to_owned()],
                vec![
                    "status".to_owned(),
                    "created_at".to_owned(),
                    "_id".to_owned()
                ],
            ]
        );
    }

    #[test]
    fn only_idempotent_commands_pass() {
        let seed = doc! { "update": "s", "updates": [
            { "q": { "_id": "a" }, "u": { "$setOnInsert": { "n": 1_i64 } }, "upsert": true },
        ] };
        assert_eq!(is_idempotent(&seed), Ok(()));
        let set = doc! { "update": "s", "updates": [
            { "q": { "_id": "a" }, "u": { "$set": { "n": 1_i64 } }, "upsert": true },
        ] };
        assert!(is_idempotent(&set).is_err(), "a $set runs again");
        let no_upsert = doc! { "update": "s", "updates": [
            { "q": { "_id": "a" }, "u": { "$setOnInsert": { "n": 1_i64 } } },
        ] };
        assert!(is_idempotent(&no_upsert).is_err());
        assert!(is_idempotent(&doc! { "insert": "s", "documents": [{}] }).is_err());
        assert!(is_idempotent(&doc! { "drop": "s" }).is_err());
        assert_eq!(
            is_idempotent(&doc! { "delete": "s", "deletes": [{ "q": {}, "limit": 0 }] }),
            Ok(())
        );
    }

    #[test]
    fn write_errors_in_an_ok_reply_are_failures() {
        assert_eq!(write_failures(&doc! { "n": 1, "ok": 1.0 }), None);
        let failed = doc! {
            "n": 0, "ok": 1.0,
            "writeErrors": [{ "index": 0, "code": 121, "errmsg": "Document failed validation" }],
        };
        let reason = write_failures(&failed).expect("a failure");
        assert!(reason.contains("Document failed validation"), "{reason}");
        assert!(write_failures(&doc! { "ok": 1.0, "writeConcernError": { "code": 64 } }).is_some());
    }

    #[test]
    fn the_slot_seeds_are_longs_as_the_validators_require() {
        let slots = commands(&MIGRATIONS[2]).expect("parses");
        let seeds = slots
            .iter()
            .find(|c| c.get_str("update").ok() == Some("projection_slots"))
            .expect("the slot seeds");
        let mut seeded = Vec::new();
        for update in seeds.get_array("updates").expect("updates") {
            let update = update.as_document().expect("a document");
            let id = update
                .get_document("q")
                .and_then(|q| q.get_str("_id"))
                .expect("an _id");
            let fields = update
                .get_document("u")
                .and_then(|u| u.get_document("$setOnInsert"))
                .expect("$setOnInsert");
            seeded.push((
                id.to_owned(),
                fields.get_str("state").expect("state").to_owned(),
                fields.get_i64("checkpoint").expect("a long checkpoint"),
                fields.get_i64("version").expect("a long version"),
            ));
        }
        let expected: Vec<(String, String, i64, i64)> = ["detail", "list", "dashboard"]
            .iter()
            .flat_map(|p| {
                [
                    (format!("{p}/a"), "live".to_owned(), 0, 1),
                    (format!("{p}/b"), "retired".to_owned(), 0, 0),
                ]
            })
            .collect();
        assert_eq!(seeded, expected);
    }

    #[test]
    fn the_events_counter_is_seeded_at_a_long_zero_without_overwriting() {
        let seed = commands(&MIGRATIONS[5]).expect("parses");
        assert_eq!(
            seed,
            vec![doc! {
                "update": "counters",
                "updates": [{
                    "q": { "_id": crate::events::EVENTS_COUNTER },
                    "u": { "$setOnInsert": { "position": 0_i64 } },
                    "upsert": true,
                }],
            }],
            "an upsert that only ever inserts, of the counter appends move"
        );
    }

    #[test]
    fn create_becomes_a_collmod_with_the_same_validator() {
        let create = doc! { "create": "events", "validator": { "$jsonSchema": {} }, "validationLevel": "strict" };
        assert_eq!(
            collmod_for(&create),
            Some(
                doc! { "collMod": "events", "validator": { "$jsonSchema": {} }, "validationLevel": "strict" }
            )
        );
        assert_eq!(collmod_for(&doc! { "create": "counters" }), None);
    }
}
