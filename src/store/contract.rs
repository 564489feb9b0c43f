//! The store contract: what every backend of the store traits must do, written once and
//! run against each backend, as InfluxDB IOx runs its `iox_catalog` interface tests.
//!
//! Each behaviour is an `async fn name(store: &dyn Store)` in a submodule by concern. It
//! makes what it needs through the traits (its own organisation, users, streams), never
//! reads the database behind them, and asserts exact results. [`store_contract!`]
//! expands to one `#[tokio::test]` per behaviour, each on a fresh store, so they run in
//! parallel and fail by name. A backend joins with one line:
//!
//! ```ignore
//! store_contract!(sqlite, Some(sqlite_store().await));
//! store_contract!(postgres, postgres_store().await); // `None` skips: no database
//! ```
//!
//! 98 behaviours cover the 53 methods of the store traits:
//!
//! * `health`: `ping`, `probe_write`, `write_health`, `needs_bootstrap`, `bootstrap`,
//!   `create_org`, `principal_for_token` (of the first admin);
//! * `streams`: `create_stream`, `list_streams`, `get_stream`, `update_stream`,
//!   `set_stream_disabled`, `delete_stream`;
//! * `keys`: `add_key`, `revoke_key`, `list_keys`, `publishing_key`;
//! * `categories`: `create_category`, `list_categories`, `rename_category`,
//!   `delete_category`;
//! * `commit`: `commit_batches`, `prune_batches`, `changes` (the feed of a shared store);
//! * `points`: `list_points`, `latest_point`, `points_updated_after`, `list_revisions`;
//! * `users`: `create_user`, `list_users`, `set_user_role`, `delete_user`,
//!   `create_team`, `list_teams`, `delete_team`, `set_team_member`;
//! * `tokens`: `create_token`, `list_tokens`, `token`, `revoke_token`,
//!   `principal_for_token`;
//! * `grants`: `set_grants`, `remove_grant`, `list_grants`, `stream_accesses`,
//!   `stream_access`;
//! * `audit`: `record_audit`, `list_audit`;
//! * `runner`: `acquire_lease`, `release_lease`, `connector_state`, `report_run`,
//!   `set_connector_enabled`, `list_runs`;
//! * `notify`: webhooks, alert subscriptions, `record_status`, `claim_deliveries`,
//!   `finish_delivery`, `list_deliveries`, `prune_deliveries`, webhook cursors;
//! * `isolation`: that nothing crosses organisations, method by method.
//!
//! Errors are matched by kind (`NotFound`, `AlreadyExists`, `Conflict`, `LastAdmin`),
//! never by a backend's own error. Times are whole seconds from a fixed instant
//! ([`at`]), so a backend that keeps microseconds reads back what it was given.

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use jiff::Timestamp;

use crate::auth::Role;
use crate::batch::{PreparedBatch, PublishOutcome, ValidPoint};
use crate::ids::{KeyId, OrgId, StreamId, UserId};
use crate::period::Frequency;
use crate::stream::{KeyOrigin, Stream, StreamDefinition};
use crate::value::ValueType;

use std::str::FromStr;

use crate::store::{Bootstrap, NewKey, NewToken, SqliteStore, Store, StoreError};

mod audit;
mod categories;
mod commit;
mod grants;
mod health;
mod isolation;
mod keys;
mod notify;
mod points;
mod runner;
mod streams;
mod tokens;
mod users;

/// Expands to one `#[tokio::test]` per behaviour of the contract, in a module named
/// `$backend` with a submodule per concern; `$store` is an expression giving a
/// [`TestStore`] (it may `.await`), evaluated once per test. Each test needs a store of
/// its own, new and empty: the bootstrap behaviours expect no organisation, and prune
/// counts every batch. A behaviour written but not listed here is dead code, which the
/// build refuses (`-D warnings`).
macro_rules! store_contract {
    ($backend:ident, $store:expr) => {
        store_contract!(@backend $backend, $store, {
            health: [
                a_new_store_answers_a_ping_and_takes_probe_writes,
                write_health_is_one_shared_record_that_starts_ready,
                a_new_store_needs_a_bootstrap_that_creates_the_first_organisation,
                a_second_bootstrap_changes_nothing,
                create_org_adds_an_organisation_whose_admin_is_not_the_server_admin,
            ],
            streams: [
                a_created_stream_reads_back_as_defined_with_its_first_key,
                streams_are_listed_per_organisation_by_name,
                an_unknown_stream_is_not_found,
                create_stream_is_all_or_nothing,
                update_changes_the_name_description_and_category,
                frequency_type_and_time_zone_change_only_while_the_stream_holds_no_data,
                a_disabled_stream_is_enabled_again,
                deleting_a_stream_removes_its_keys_points_revisions_and_grants,
            ],
            keys: [
                a_stream_takes_more_keys_listed_in_creation_order,
                a_public_key_is_added_once_per_stream,
                a_revoked_key_keeps_its_first_revocation_time,
                publishing_key_answers_the_key_with_its_streams_settings,
                publishing_key_is_none_for_an_unknown_key_or_stream,
            ],
            categories: [
                categories_are_listed_by_name_with_their_stream_counts,
                a_category_name_is_taken_once_per_organisation_whatever_its_case,
                a_renamed_category_is_followed_by_its_streams,
                a_category_in_use_cannot_be_deleted,
                an_unknown_category_is_not_found,
            ],
            commit: [
                new_points_are_accepted_and_stored_as_sent,
                a_replayed_batch_id_returns_the_stored_outcome_and_stores_nothing,
                a_changed_value_makes_a_revision,
                an_unchanged_value_makes_no_revision,
                a_shared_store_announces_each_commit_on_its_change_feed,
                a_changed_external_id_makes_a_revision,
                a_large_batch_keeps_every_character_and_its_revisions_far_apart,
                two_batches_in_one_call_touching_one_period_revise_in_order,
                the_same_batch_id_on_two_streams_is_two_batches,
                a_commit_keeps_the_streams_count_latest_period_and_last_data,
                a_commit_records_when_its_key_was_last_used,
                a_batch_whose_points_were_all_rejected_is_remembered_and_stores_nothing,
                a_disabled_stream_refuses_its_batch_next_to_accepted_ones,
                a_deleted_stream_refuses_its_batch_as_gone,
                a_batch_validated_against_another_frequency_is_refused,
                prune_forgets_only_batches_accepted_before_the_cutoff,
                a_pruned_batch_id_is_committed_again_as_new,
            ],
            points: [
                list_points_answers_a_period_range_oldest_first,
                list_points_stops_at_the_limit,
                a_stream_without_points_lists_none_and_has_no_latest_point,
                latest_point_is_the_latest_period_not_the_latest_write,
                points_updated_after_follows_the_order_of_changes,
                points_changed_at_one_instant_resume_after_a_period,
                revisions_are_listed_oldest_first_per_period,
            ],
            users: [
                users_are_created_and_listed_by_name,
                a_user_name_is_taken_once_per_organisation,
                set_user_role_changes_the_role_a_token_acts_with,
                the_last_admin_cannot_be_demoted,
                the_last_admin_cannot_be_deleted,
                deleting_a_user_removes_their_tokens_memberships_and_grants,
                teams_are_listed_by_name_with_their_members,
                a_team_name_is_taken_once_per_organisation,
                a_membership_is_added_once_and_removed,
                a_membership_needs_an_existing_team_and_user,
                deleting_a_team_removes_its_grants_and_memberships,
            ],
            tokens: [
                a_created_token_names_its_principal,
                an_unknown_token_names_nobody,
                tokens_are_listed_per_user_or_for_the_whole_organisation,
                a_token_is_refused_from_its_expiry_on,
                a_revoked_token_is_refused_and_keeps_its_first_revocation_time,
                token_calls_need_a_known_token_and_user,
                a_tokens_last_use_is_recorded_to_the_minute,
            ],
            grants: [
                the_creator_manages_a_new_stream_and_its_grants_are_added,
                the_creator_keeps_manage_whatever_the_grants_at_creation_say,
                set_grants_adds_grants_and_changes_existing_ones,
                remove_grant_removes_one_grant,
                grants_need_an_existing_stream_and_grantee,
                accesses_reach_a_user_directly_through_a_team_and_through_the_org,
                the_strongest_grant_reaching_a_user_wins,
                leaving_a_team_takes_away_what_it_granted,
                an_admins_implicit_access_is_not_a_grant,
            ],
            audit: [
                audit_entries_are_listed_oldest_first_within_the_newest_limit,
                audit_entries_are_filtered_by_target_actor_and_time,
                audit_pages_go_back_from_the_newest_entry,
            ],
            runner: [
                a_connector_never_seen_has_the_default_state,
                a_lease_is_granted_to_the_first_runner_for_its_slot,
                the_holder_renews_its_lease,
                another_runner_is_refused_while_the_lease_is_unexpired,
                an_expired_lease_is_taken_by_another_runner,
                a_completed_slot_is_never_leased_again,
                release_ends_only_the_holders_lease,
                a_report_needs_the_lease_for_its_slot,
                a_successful_report_logs_the_run_moves_the_cursor_and_ends_the_lease,
                a_report_on_an_expired_lease_nobody_took_is_accepted,
                failed_reports_keep_the_cursor_and_disable_at_the_limit,
                a_manual_success_recovers_a_disabled_connector,
                a_requested_run_is_listed_until_a_run_of_its_slot_reports,
                enabling_a_connector_resets_its_failures,
                runs_are_listed_newest_first_up_to_the_limit,
                the_run_log_keeps_each_connectors_newest_runs,
                the_run_log_pages_back_from_the_newest_run,
                a_cursor_is_set_by_hand_only_while_no_run_holds_the_lease,
                a_forgotten_connector_starts_again_from_nothing,
            ],
            notify: [
                webhooks_are_kept_per_organisation_disabled_enabled_and_deleted,
                subscriptions_are_kept_per_organisation_and_follow_a_renamed_category,
                a_status_change_is_recorded_once_with_its_deliveries,
                a_claimed_delivery_waits_for_its_lease_and_a_disabled_webhooks_wait,
                a_target_takes_a_bounded_share_of_a_claim_and_its_failure_holds_back_the_rest,
                failed_deliveries_retry_then_give_up_and_disable_their_webhook,
                deliveries_are_listed_per_target_in_pages_and_pruned_once_finished,
                a_webhook_cursor_moves_only_from_where_it_was,
            ],
            isolation: [
                streams_are_invisible_to_another_organisation,
                keys_and_grants_are_invisible_to_another_organisation,
                users_and_teams_are_invisible_to_another_organisation,
                tokens_are_invisible_to_another_organisation,
                categories_are_invisible_to_another_organisation,
                an_org_grant_reaches_only_its_own_organisation,
                connectors_of_one_name_are_separate_per_organisation,
                the_audit_log_is_per_organisation,
            ],
        });
    };
    (@backend $backend:ident, $store:expr, {
        $($concern:ident: [$($behaviour:ident),* $(,)?]),* $(,)?
    }) => {
        mod $backend {
            $(
                mod $concern {
                    // `$store` names things where the macro is invoked.
                    #[allow(unused_imports)]
                    use super::super::*;
                    $(
                        #[tokio::test]
                        async fn $behaviour() {
                            let store: Option<$crate::store::contract::TestStore> = $store;
                            let Some(store) = store else { return };
                            $crate::store::contract::$concern::$behaviour(store.store()).await;
                        }
                    )*
                }
            )*
        }
    };
}

store_contract!(sqlite, Some(sqlite_store().await));
store_contract!(postgres, postgres_store().await);

/// A store under test, with what must live as long as it (a temporary folder, a
/// database to drop).
pub struct TestStore {
    store: Arc<dyn Store>,
    _keep: Box<dyn Any + Send>,
}

impl TestStore {
    pub fn new(store: Arc<dyn Store>, keep: impl Any + Send) -> Self {
        Self {
            store,
            _keep: Box::new(keep),
        }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }
}

/// A SQLite store on a new file in a temporary folder.
pub async fn sqlite_store() -> TestStore {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}/kpi.db", dir.path().display());
    let store = SqliteStore::open(&url).await.expect("the database opens");
    TestStore::new(Arc::new(store), dir)
}

/// A PostgreSQL store in a schema of its own, dropped when the test ends, on the test
/// database of `KPISTREAM_TEST_POSTGRES_URL` and `KPISTREAM_TEST_DB_PASSWORD`
/// (scripts/test.sh exports both after scripts/services.sh started PostgreSQL). Without
/// them: `None` (the test skips, saying so), except under `CI=true`, where it fails.
pub async fn postgres_store() -> Option<TestStore> {
    let (store, schema) = postgres_schema_store().await?;
    Some(TestStore::new(Arc::new(store), schema))
}

/// The PostgreSQL store of [`postgres_store`], and what drops its schema when dropped.
pub async fn postgres_schema_store() -> Option<(crate::store::PostgresStore, impl Any + Send)> {
    use sqlx::{ConnectOptions, Executor};
    let (url, password) = match (
        std::env::var("KPISTREAM_TEST_POSTGRES_URL"),
        std::env::var("KPISTREAM_TEST_DB_PASSWORD"),
    ) {
        (Ok(url), Ok(password)) => (url, password),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "KPISTREAM_TEST_POSTGRES_URL and KPISTREAM_TEST_DB_PASSWORD must be set under CI=true: scripts/test.sh exports them once scripts/services.sh has started PostgreSQL"
        ),
        _ => {
            eprintln!(
                "skipped: KPISTREAM_TEST_POSTGRES_URL or KPISTREAM_TEST_DB_PASSWORD is not set (run scripts/services.sh as root and source target/test-services.env)"
            );
            return None;
        }
    };
    let options = sqlx::postgres::PgConnectOptions::from_str(&url)
        .expect("KPISTREAM_TEST_POSTGRES_URL is a PostgreSQL URL")
        .password(&password);
    let schema = format!("kpi_contract_{:016x}", rand::random::<u64>());
    let mut admin = options
        .connect()
        .await
        .expect("the test PostgreSQL answers");
    admin
        .execute(format!("CREATE SCHEMA {schema}").as_str())
        .await
        .expect("a schema for the test");
    let store = crate::store::PostgresStore::connect(
        options
            .clone()
            .options([("search_path", schema.as_str())])
            .application_name(&schema),
        &crate::store::postgres::PostgresOptions {
            max_connections: 4,
            ..Default::default()
        },
    )
    .await
    .expect("the store opens");
    Some((store, DropSchema { options, schema }))
}

/// Drops a test's schema with everything in it when the test ends.
struct DropSchema {
    options: sqlx::postgres::PgConnectOptions,
    schema: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        use sqlx::{ConnectOptions, Executor};
        let (options, schema) = (self.options.clone(), self.schema.clone());
        // The test's runtime is ending: drop on a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let mut conn = options.connect().await.ok()?;
                // The store's connections (named after the schema) may still hold locks:
                // a transaction that a failing test left open is rolled back by a task of
                // the test's runtime, which has stopped.
                conn.execute(
                    format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = '{schema}' AND pid <> pg_backend_pid()"
                    )
                    .as_str(),
                )
                .await
                .ok()?;
                conn.execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
                    .await
                    .ok()
            })
        });
        let _ = dropped.join();
    }
}

/// `seconds` after the instant every behaviour starts from (2026-11-23T00:00:00Z).
pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_795_392_000 + seconds).expect("a valid instant")
}

/// An organisation made for one behaviour, with its first admin "ada".
pub struct TestOrg {
    pub id: OrgId,
    pub admin: UserId,
    /// The admin's first token.
    pub token: [u8; 32],
}

pub fn bootstrap_of(org_name: &str) -> Bootstrap {
    Bootstrap {
        org_id: OrgId::generate(),
        org_name: org_name.to_owned(),
        user_id: UserId::generate(),
        user_name: "ada".to_owned(),
        token_hash: rand::random(),
    }
}

pub async fn new_org(store: &dyn Store, name: &str) -> TestOrg {
    let first = bootstrap_of(name);
    store.create_org(&first, at(0)).await.expect("create_org");
    TestOrg {
        id: first.org_id,
        admin: first.user_id,
        token: first.token_hash,
    }
}

/// A user of `org`, with `role`.
pub async fn new_user(store: &dyn Store, org: &TestOrg, name: &str, role: Role) -> UserId {
    store
        .create_user(&org.id, name, role, at(0))
        .await
        .expect("create_user")
        .id
}

/// A token for user `user` of `org`, valid until `expires_at`; its hash.
pub async fn new_token(
    store: &dyn Store,
    org: &TestOrg,
    user: &str,
    expires_at: Option<Timestamp>,
) -> (String, [u8; 32]) {
    let hash = rand::random();
    let token = NewToken {
        user: user.to_owned(),
        name: "cli".to_owned(),
        hash,
        expires_at,
    };
    let info = store
        .create_token(&org.id, &token, at(0))
        .await
        .expect("create_token");
    (info.id, hash)
}

pub fn definition(name: &str, frequency: Frequency) -> StreamDefinition {
    StreamDefinition {
        name: name.to_owned(),
        description: String::new(),
        category: None,
        frequency,
        value_type: ValueType::Number,
        time_zone: "UTC".to_owned(),
    }
}

pub fn new_key() -> NewKey {
    NewKey {
        key_id: KeyId::generate(),
        public_key: rand::random(),
        origin: KeyOrigin::Generated,
    }
}

/// A stream of `org` made by its admin, without grants; with its first key's id.
pub async fn new_stream(
    store: &dyn Store,
    org: &TestOrg,
    definition: &StreamDefinition,
) -> (Stream, KeyId) {
    let key = new_key();
    let (stream, _) = store
        .create_stream(
            &org.id,
            &org.admin,
            &StreamId::generate(),
            definition,
            &key,
            &[],
            at(0),
        )
        .await
        .expect("create_stream");
    (stream, key.key_id)
}

/// A daily stream named `name`, with its first key's id.
pub async fn daily_stream(store: &dyn Store, org: &TestOrg, name: &str) -> (Stream, KeyId) {
    new_stream(store, org, &definition(name, Frequency::Daily)).await
}

pub fn point(period: &str, value: &str) -> ValidPoint {
    ValidPoint {
        period: period.to_owned(),
        value: value.to_owned(),
        external_id: None,
    }
}

pub fn point_from(period: &str, value: &str, external_id: &str) -> ValidPoint {
    ValidPoint {
        external_id: Some(external_id.to_owned()),
        ..point(period, value)
    }
}

/// A batch for `stream` signed with `key`, validated against the stream's frequency.
pub fn batch(stream: &Stream, key: &KeyId, batch_id: &str, points: &[ValidPoint]) -> PreparedBatch {
    PreparedBatch::new(
        stream.id.clone(),
        key.clone(),
        batch_id.to_owned(),
        stream.definition.frequency,
        points.to_vec(),
        Vec::new(),
    )
}

/// Commits one batch that its stream takes.
pub async fn commit(store: &dyn Store, batch: PreparedBatch, now: Timestamp) -> PublishOutcome {
    let mut results = store
        .commit_batches(std::sync::Arc::new(vec![batch]), now)
        .await
        .expect("commit_batches");
    assert_eq!(results.len(), 1, "one result per batch");
    results.remove(0).expect("the stream takes the batch")
}

/// Two values are equal field by field (for types that do not derive `PartialEq`).
#[track_caller]
pub fn assert_same<T: Debug>(left: &T, right: &T) {
    assert_eq!(format!("{left:#?}"), format!("{right:#?}"));
}

#[track_caller]
pub fn assert_not_found<T: Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[track_caller]
pub fn assert_already_exists<T: Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::AlreadyExists(_)) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
}

#[track_caller]
pub fn assert_conflict<T: Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
}
