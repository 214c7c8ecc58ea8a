//! The state store suite, run on SQLite always and on PostgreSQL when
//! `TETHER_TEST_DATABASE_URL` names one (`.ci/run` provides it).

use tether_abi::{EventInfo, Record};
use tether_core::store::{LinkKey, LinkRow, LinkSide, Outcome, Queued, SealedSecret, Store};
use tether_core::vault::{SecretKey, Vault};

async fn each_store(test: impl AsyncFn(Store, &str)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Store::open(&format!("sqlite://{}", dir.path().join("state.sqlite").display()))
        .await
        .expect("sqlite");
    test(sqlite, "sqlite").await;
    match std::env::var("TETHER_TEST_DATABASE_URL") {
        Ok(url) => test(Store::open(&url).await.expect("postgres"), "postgres").await,
        Err(_) => {
            // Straight to stderr: the harness captures eprintln! of passing tests, and a skip
            // must be seen.
            let notice =
                "notice: TETHER_TEST_DATABASE_URL is not set; the PostgreSQL half of the store suite was skipped\n";
            let _ = std::io::Write::write_all(&mut std::io::stderr(), notice.as_bytes());
        }
    }
}

/// Unique per run so reruns against one PostgreSQL database do not see each other's rows.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{nanos}-{}", std::process::id())
}

#[tokio::test]
async fn secrets_upsert_and_read_back() {
    each_store(async |store, dialect| {
        let instance = unique("ghl");
        assert_eq!(
            store.secret_get(&instance, "token").await.expect("get"),
            None,
            "{dialect}"
        );
        let first = SealedSecret {
            nonce: vec![1; 24],
            ciphertext: vec![2, 3],
        };
        let second = SealedSecret {
            nonce: vec![4; 24],
            ciphertext: vec![5, 6, 7],
        };
        store.secret_put(&instance, "token", &first, 1).await.expect("put");
        store
            .secret_put(&instance, "token", &second, 2)
            .await
            .expect("overwrite");
        assert_eq!(
            store.secret_get(&instance, "token").await.expect("get"),
            Some(second),
            "{dialect}"
        );
    })
    .await;
}

#[tokio::test]
async fn the_vault_round_trips_on_every_dialect() {
    each_store(async |store, dialect| {
        let instance = unique("moloni");
        let vault = Vault::new(
            SecretKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("key"),
            store,
        );
        vault.put(&instance, "refresh_token", "rt-1", 1).await.expect("put");
        vault.put(&instance, "refresh_token", "rt-2", 2).await.expect("rotate");
        assert_eq!(
            vault.get(&instance, "refresh_token").await.expect("get").as_deref(),
            Some("rt-2"),
            "{dialect}"
        );
    })
    .await;
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("state.sqlite").display());
    drop(Store::open(&url).await.expect("first open"));
    Store::open(&url).await.expect("second open of a migrated store");
}

/// A webhook-log line of `connector` before the store fills in what it queued.
fn log_line(connector: &str, verdict: &str, at: i64) -> tether_core::store::WebhookLogRow {
    tether_core::store::WebhookLogRow {
        id: 0,
        received_at: at,
        connector: connector.to_owned(),
        event_types: "ContactCreate".into(),
        verdict: verdict.into(),
        status: 200,
        queued: -1,
        detail: None,
    }
}

fn record(id: &str, event: Option<&str>, name: &str) -> Record {
    let mut fields = tether_abi::Fields::new();
    fields.insert("name".into(), name.into());
    Record {
        id: id.into(),
        updated_at: None,
        deleted: false,
        parent: None,
        event: event.map(|e| EventInfo {
            id: e.into(),
            kind: "customer.updated".into(),
        }),
        fields,
    }
}

#[tokio::test]
async fn queueing_advances_the_cursor_and_skips_events_seen_before() {
    each_store(async |store, dialect| {
        let flow = unique("moloni-customers");
        assert_eq!(store.cursor(&flow).await.expect("cursor"), None, "{dialect}");
        let page = [record("1", Some("e1"), "Ana"), record("2", Some("e2"), "Rui")];
        let queued = store
            .enqueue(&flow, &page, Some("2026-11-01T00:00:00Z"), 10)
            .await
            .expect("enqueue");
        assert_eq!(
            queued,
            Queued {
                inserted: 2,
                duplicates: 0
            },
            "{dialect}"
        );
        assert_eq!(
            store.cursor(&flow).await.expect("cursor").as_deref(),
            Some("2026-11-01T00:00:00Z")
        );
        // The same page again (a crash before the cursor moved on elsewhere, a replayed webhook).
        let again = store.enqueue(&flow, &page[1..], None, 11).await.expect("enqueue");
        assert_eq!(
            again,
            Queued {
                inserted: 0,
                duplicates: 1
            },
            "{dialect}"
        );
        // Records without an event id are always queued.
        let plain = store
            .enqueue(&flow, &[record("3", None, "Eva"), record("3", None, "Eva")], None, 12)
            .await
            .expect("enqueue");
        assert_eq!(plain.inserted, 2, "{dialect}");
        let counts = store.flow_counts().await.expect("counts");
        let ours = counts.iter().find(|c| c.flow == flow).expect("our flow");
        assert_eq!((ours.pending, ours.dead, ours.done), (4, 0, 0), "{dialect}");
    })
    .await;
}

/// A sweep re-reads every record; only a record whose content differs from its latest queued row
/// becomes a row, so a change that returns to an earlier state (A, B, A) is queued each time.
#[tokio::test]
async fn a_sweep_queues_only_records_that_changed_since_their_latest_row() {
    each_store(async |store, dialect| {
        let flow = unique("ghl-tasks");
        let first = [record("t1", None, "Call"), record("t2", None, "Quote")];
        let queued = store.enqueue_changed(&flow, &first, 1).await.expect("sweep");
        assert_eq!((queued.inserted, queued.duplicates), (2, 0), "{dialect}");
        let again = store.enqueue_changed(&flow, &first, 2).await.expect("sweep");
        assert_eq!((again.inserted, again.duplicates), (0, 2), "nothing changed: {dialect}");
        let edited = [record("t1", None, "Call back"), record("t2", None, "Quote")];
        let queued = store.enqueue_changed(&flow, &edited, 3).await.expect("sweep");
        assert_eq!((queued.inserted, queued.duplicates), (1, 1), "{dialect}");
        // Back to the first title: differs from the latest row, so it is queued.
        let queued = store.enqueue_changed(&flow, &first[..1], 4).await.expect("sweep");
        assert_eq!(queued.inserted, 1, "A, B, A: {dialect}");
        // A row queued another way (a webhook, with its event) counts as the latest too.
        store
            .enqueue(&flow, &[record("t2", Some(&unique("evt")), "Quote")], None, 5)
            .await
            .expect("webhook");
        let queued = store.enqueue_changed(&flow, &first[1..], 6).await.expect("sweep");
        assert_eq!(queued.inserted, 1, "the webhook's row differs by its event: {dialect}");
        let counts = store.flow_counts().await.expect("counts");
        let ours = counts.iter().find(|c| c.flow == flow).expect("our flow");
        assert_eq!(ours.pending, 6, "{dialect}");
    })
    .await;
}

/// The parents a sweep reads: the ids on either side of the links between two systems, in
/// order, a page at a time; another pair's links are not among them.
#[tokio::test]
async fn linked_ids_page_through_one_side_of_a_pair_of_systems() {
    each_store(async |store, dialect| {
        let flow = unique("links");
        let source = unique("aroflo/clients");
        store
            .enqueue(
                &flow,
                &[
                    record("c1", None, "A"),
                    record("c2", None, "B"),
                    record("c3", None, "C"),
                ],
                None,
                0,
            )
            .await
            .expect("enqueue");
        let rows = store.claim(&flow, "w", 10, 60_000, 1).await.expect("claim");
        for (row, (source_id, target_id)) in rows.iter().zip([("c1", "g3"), ("c2", "g1"), ("c3", "g2")]) {
            let key = LinkKey {
                source: source.clone(),
                source_id: source_id.into(),
                target: "ghl/contact".into(),
            };
            let link = LinkRow {
                target_id: target_id.into(),
                written_hash: None,
                written: None,
                source_updated_at: None,
                parent_id: None,
            };
            let outcome = Outcome::Delivered {
                link: Some((key, link)),
            };
            assert!(store.finish(row.id, "w", &outcome, 2).await.expect("finish"));
        }
        let pair = (source.as_str(), "ghl/contact");
        let page = store.linked_ids(pair, LinkSide::Target, None, 2).await.expect("ids");
        assert_eq!(page, ["g1", "g2"], "{dialect}");
        let rest = store
            .linked_ids(pair, LinkSide::Target, Some("g2"), 2)
            .await
            .expect("ids");
        assert_eq!(rest, ["g3"], "{dialect}");
        let sources = store.linked_ids(pair, LinkSide::Source, None, 10).await.expect("ids");
        assert_eq!(sources, ["c1", "c2", "c3"], "{dialect}");
        let other = store
            .linked_ids((source.as_str(), "aroflo/task"), LinkSide::Target, None, 10)
            .await
            .expect("ids");
        assert!(other.is_empty(), "{dialect}");
    })
    .await;
}

/// A page larger than one INSERT statement holds: every row is queued once, and the same page
/// again is all duplicates, whichever statement each row was in.
#[tokio::test]
async fn a_page_larger_than_one_statement_is_queued_whole() {
    each_store(async |store, dialect| {
        let flow = unique("big-page");
        let page: Vec<Record> = (0..1_234)
            .map(|i| record(&format!("r{i}"), Some(&format!("e{i}")), "Ana"))
            .collect();
        let queued = store.enqueue(&flow, &page, None, 10).await.expect("enqueue");
        assert_eq!((queued.inserted, queued.duplicates), (1_234, 0), "{dialect}");
        let again = store.enqueue(&flow, &page[1_000..], None, 11).await.expect("enqueue");
        assert_eq!((again.inserted, again.duplicates), (0, 234), "{dialect}");
        let counts = store.flow_counts().await.expect("counts");
        let pending = counts.iter().find(|c| c.flow == flow).map_or(0, |c| c.pending);
        assert_eq!(pending, 1_234, "{dialect}");
    })
    .await;
}

/// Group commit: several webhooks in one transaction, each with its own queue rows and log line;
/// an event id seen earlier in the same batch is a duplicate, as it would be across batches.
#[tokio::test]
async fn an_intake_batch_queues_and_logs_each_webhook() {
    use tether_core::store::IntakeWrite;
    each_store(async |store, dialect| {
        let contacts = unique("intake-contacts");
        let tasks = unique("intake-tasks");
        let connector = unique("intake");
        let log = |verdict: &str, at: i64| log_line(&connector, verdict, at);
        let writes = vec![
            IntakeWrite {
                queue: vec![
                    (contacts.clone(), vec![record("c1", Some("e1"), "Ana")]),
                    (
                        tasks.clone(),
                        vec![record("t1", Some("e2"), "Call"), record("t2", Some("e3"), "Mail")],
                    ),
                ],
                log: log("verified", 1),
            },
            // The same event again (the sender retried before it heard back), and a new one.
            IntakeWrite {
                queue: vec![(
                    contacts.clone(),
                    vec![record("c1", Some("e1"), "Ana"), record("c2", Some("e4"), "Rui")],
                )],
                log: log("verified", 2),
            },
            // A refused webhook: a log line, no rows.
            IntakeWrite {
                queue: Vec::new(),
                log: log("refused", 3),
            },
        ];
        let results = store.commit_intake(&writes, 10).await.expect("commit");
        let queued = |inserted, duplicates| Queued { inserted, duplicates };
        assert_eq!(
            results,
            vec![vec![queued(1, 0), queued(2, 0)], vec![queued(1, 1)], vec![]],
            "{dialect}"
        );
        let logged: Vec<(String, i64)> = store
            .webhook_log(1_000)
            .await
            .expect("log")
            .into_iter()
            .filter(|w| w.connector == connector)
            .map(|w| (w.verdict, w.queued))
            .rev()
            .collect();
        assert_eq!(
            logged,
            vec![("verified".into(), 3), ("verified".into(), 1), ("refused".into(), 0)],
            "each webhook's log line counts the rows it queued ({dialect})"
        );
        let counts = store.flow_counts().await.expect("counts");
        let pending = |flow: &str| counts.iter().find(|c| c.flow == flow).map_or(0, |c| c.pending);
        assert_eq!((pending(&contacts), pending(&tasks)), (2, 2), "{dialect}");
    })
    .await;
}

/// Webhooks and delivery results in one transaction: each finish says whether the row was still
/// its worker's, and one that was not changes nothing (its events are not recorded either).
#[tokio::test]
async fn one_commit_stores_webhooks_and_delivery_results() {
    use tether_core::store::{EventKind, Finish, IntakeWrite, NewEvent};
    each_store(async |store, dialect| {
        let flow = unique("commit-both");
        let page = [record("1", Some("x1"), "Ana"), record("2", Some("x2"), "Rui")];
        store.enqueue(&flow, &page, None, 1).await.expect("enqueue");
        let claimed = store.claim(&flow, "w", 10, 60_000, 2).await.expect("claim");
        assert_eq!(claimed.len(), 2, "{dialect}");
        let event = |source_id: &str| NewEvent {
            flow: flow.clone(),
            source_id: source_id.into(),
            target_id: None,
            kind: EventKind::Dead,
            detail: Some("refused".into()),
        };
        let finishes = [
            Finish {
                id: claimed[0].id,
                worker: "w".into(),
                outcome: Outcome::Delivered { link: None },
                events: vec![event("1")],
            },
            // Not this worker's row: as if its lease had run out and another had taken it.
            Finish {
                id: claimed[1].id,
                worker: "another".into(),
                outcome: Outcome::Dead {
                    error: "refused".into(),
                },
                events: vec![event("2")],
            },
        ];
        let intake = [IntakeWrite {
            queue: vec![(
                flow.clone(),
                vec![record("3", Some("x3"), "Eva"), record("1", Some("x1"), "Ana")],
            )],
            log: log_line(&flow, "verified", 3),
        }];
        let committed = store.commit(&intake, &finishes, 3).await.expect("commit");
        assert_eq!(
            committed.intake,
            vec![vec![Queued {
                inserted: 1,
                duplicates: 1
            }]],
            "{dialect}"
        );
        assert_eq!(committed.finished, vec![true, false], "{dialect}");
        let counts = store.flow_counts().await.expect("counts");
        let count = counts.iter().find(|c| c.flow == flow).expect("the flow's counts");
        assert_eq!((count.done, count.pending, count.dead), (1, 2, 0), "{dialect}");
        let events: Vec<String> = store
            .events(Some(&flow), None, 100)
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.source_id)
            .collect();
        assert_eq!(
            events,
            vec!["1".to_owned()],
            "a finish that was not ours records nothing ({dialect})"
        );
    })
    .await;
}

/// Many tasks writing at once through one group commit: each gets its own answer, and every
/// write is stored once.
#[tokio::test]
async fn a_group_commit_answers_every_writer() {
    use std::sync::Arc;
    use tether_core::store::{Finish, GroupCommit, IntakeWrite};
    each_store(async |store, dialect| {
        let flow = unique("group");
        let page: Vec<Record> = (0..40).map(|i| record(&format!("p{i}"), None, "Ana")).collect();
        store.enqueue(&flow, &page, None, 1).await.expect("enqueue");
        let claimed = store.claim(&flow, "w", 40, 60_000, 2).await.expect("claim");
        let commits = Arc::new(GroupCommit::new(store.clone(), Arc::new(|| 5)));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, row) in claimed.iter().enumerate() {
            let (commits, id) = (Arc::clone(&commits), row.id);
            // Every fourth finish names a worker that does not hold the row.
            let worker = if i % 4 == 0 { "stranger" } else { "w" };
            tasks.spawn(async move {
                let ours = commits
                    .finish(Finish {
                        id,
                        worker: worker.into(),
                        outcome: Outcome::Delivered { link: None },
                        events: Vec::new(),
                    })
                    .await
                    .expect("finish");
                (format!("finish {i}"), usize::from(ours))
            });
        }
        for i in 0..60 {
            let (commits, flow) = (Arc::clone(&commits), flow.clone());
            tasks.spawn(async move {
                let queued = commits
                    .intake(IntakeWrite {
                        // Webhooks 0..30 twice over: the second of each pair is a duplicate.
                        queue: vec![(
                            flow.clone(),
                            vec![record(&format!("h{i}"), Some(&format!("ev{}", i % 30)), "Rui")],
                        )],
                        log: log_line(&flow, "verified", 5),
                    })
                    .await
                    .expect("intake");
                (format!("webhook {i}"), queued[0].inserted)
            });
        }
        let mut finished_ours = 0;
        let mut webhooks_queued = 0;
        while let Some(answer) = tasks.join_next().await {
            let (what, n) = answer.expect("task");
            if what.starts_with("finish") {
                finished_ours += n;
            } else {
                webhooks_queued += n;
            }
        }
        assert_eq!((finished_ours, webhooks_queued), (30, 30), "{dialect}");
        let counts = store.flow_counts().await.expect("counts");
        let count = counts.iter().find(|c| c.flow == flow).expect("the flow's counts");
        assert_eq!((count.done, count.pending), (30, 10 + 30), "{dialect}");
        let logged = store.webhook_log(10_000).await.expect("log");
        let lines: Vec<i64> = logged
            .iter()
            .filter(|w| w.connector == flow)
            .map(|w| w.queued)
            .collect();
        assert_eq!(lines.len(), 60, "a log line per webhook ({dialect})");
        assert_eq!(lines.iter().sum::<i64>(), 30, "{dialect}");
    })
    .await;
}

/// A 429 is not the record's failure: a throttled row waits for its time and its attempt is given
/// back, however many times the target throttles it.
#[tokio::test]
async fn throttled_rows_wait_without_using_their_attempts() {
    each_store(async |store, dialect| {
        let flow = unique("throttled");
        store
            .enqueue(&flow, &[record("r1", Some("e1"), "x")], None, 1)
            .await
            .expect("enqueue");
        let mut at = 1;
        for round in 0..12 {
            let rows = store.claim(&flow, "w", 10, 60_000, at).await.expect("claim");
            assert_eq!(rows.len(), 1, "{dialect}: round {round}");
            assert_eq!(
                rows[0].attempts, 1,
                "{dialect}: round {round}: the attempt was given back"
            );
            let throttled = Outcome::Throttled {
                at_ms: at + 1_000,
                error: "HTTP 429".into(),
            };
            assert!(store.finish(rows[0].id, "w", &throttled, at).await.expect("finish"));
            assert!(
                store
                    .claim(&flow, "w", 10, 60_000, at + 999)
                    .await
                    .expect("claim")
                    .is_empty(),
                "{dialect}: not due before its time"
            );
            at += 1_000;
        }
        let counts = store.flow_counts().await.expect("counts");
        let mine = counts.iter().find(|c| c.flow == flow).expect("counts");
        assert_eq!((mine.pending, mine.dead), (1, 0), "{dialect}");
    })
    .await;
}

#[tokio::test]
async fn changes_to_one_record_are_delivered_in_order_one_at_a_time() {
    each_store(async |store, dialect| {
        let flow = unique("ordered");
        let changes = [record("A", None, "v1"), record("B", None, "b"), record("A", None, "v2")];
        store.enqueue(&flow, &changes, None, 0).await.expect("enqueue");
        let first = store.claim(&flow, "w1", 10, 60_000, 1).await.expect("claim");
        let names: Vec<_> = first
            .iter()
            .map(|c| (c.source_id.as_str(), c.record.fields["name"].as_str()))
            .collect();
        assert_eq!(
            names,
            [("A", Some("v1")), ("B", Some("b"))],
            "{dialect}: A's second change waits for its first"
        );
        // Another worker finds nothing: the rows are claimed, and A/v2 is behind A/v1.
        assert!(
            store.claim(&flow, "w2", 10, 60_000, 2).await.expect("claim").is_empty(),
            "{dialect}"
        );
        let a1 = &first[0];
        assert!(store
            .finish(a1.id, "w1", &Outcome::Delivered { link: None }, 3)
            .await
            .expect("finish"));
        let next = store.claim(&flow, "w2", 10, 60_000, 4).await.expect("claim");
        assert_eq!(next.len(), 1, "{dialect}");
        assert_eq!(next[0].record.fields["name"], "v2");
    })
    .await;
}

#[tokio::test]
async fn an_expired_claim_passes_to_another_worker_and_the_first_cannot_finish_it() {
    each_store(async |store, dialect| {
        let flow = unique("lease");
        store
            .enqueue(&flow, &[record("1", None, "x")], None, 0)
            .await
            .expect("enqueue");
        let claimed = store.claim(&flow, "crashed", 1, 1_000, 10).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        assert!(
            store.claim(&flow, "w2", 1, 1_000, 500).await.expect("claim").is_empty(),
            "{dialect}: lease still held"
        );
        let reclaimed = store.claim(&flow, "w2", 1, 1_000, 1_011).await.expect("claim");
        assert_eq!(reclaimed.len(), 1, "{dialect}");
        assert_eq!(reclaimed[0].attempts, 2, "{dialect}: the crashed attempt counts");
        assert!(!store
            .finish(claimed[0].id, "crashed", &Outcome::Delivered { link: None }, 1_012)
            .await
            .expect("finish"));
        assert!(store
            .finish(reclaimed[0].id, "w2", &Outcome::Delivered { link: None }, 1_013)
            .await
            .expect("finish"));
    })
    .await;
}

#[tokio::test]
async fn retries_dead_letters_replay_and_drop() {
    each_store(async |store, dialect| {
        let flow = unique("dlq");
        store
            .enqueue(&flow, &[record("1", None, "x"), record("2", None, "y")], None, 0)
            .await
            .expect("enqueue");
        let rows = store.claim(&flow, "w", 10, 60_000, 1).await.expect("claim");
        let retry = Outcome::Retry {
            at_ms: 5_000,
            error: "HTTP 503 after 3 attempts".into(),
        };
        assert!(store.finish(rows[0].id, "w", &retry, 2).await.expect("retry"));
        assert!(store
            .finish(
                rows[1].id,
                "w",
                &Outcome::Dead {
                    error: "invalid: email".into()
                },
                2
            )
            .await
            .expect("dead"));
        assert!(
            store
                .claim(&flow, "w", 10, 60_000, 4_999)
                .await
                .expect("claim")
                .is_empty(),
            "{dialect}: not due yet"
        );
        let due = store.claim(&flow, "w", 10, 60_000, 5_000).await.expect("claim");
        assert_eq!(due.len(), 1, "{dialect}");
        assert!(store
            .finish(
                due[0].id,
                "w",
                &Outcome::Dead {
                    error: "HTTP 503 after 3 attempts".into()
                },
                5_001
            )
            .await
            .expect("dead"));

        let dead = store.dead_letters(Some(&flow), 100).await.expect("list");
        assert_eq!(dead.len(), 2, "{dialect}");
        assert_eq!(dead[1].last_error.as_deref(), Some("invalid: email"));
        assert_eq!(dead[0].attempts, 2);
        assert!(dead[0].record.contains("\"name\":\"x\""), "{}", dead[0].record);

        assert_eq!(
            store.replay(Some(dead[0].id), None, 6_000).await.expect("replay"),
            1,
            "{dialect}"
        );
        let replayed = store.claim(&flow, "w", 10, 60_000, 6_000).await.expect("claim");
        assert_eq!(
            (replayed.len(), replayed[0].attempts),
            (1, 1),
            "{dialect}: a fresh attempt budget"
        );
        assert!(store.drop_dead(dead[1].id).await.expect("drop"), "{dialect}");
        assert!(!store.drop_dead(dead[1].id).await.expect("drop again"), "{dialect}");
        assert!(
            store.dead_letters(Some(&flow), 100).await.expect("list").is_empty(),
            "{dialect}"
        );
    })
    .await;
}

#[tokio::test]
async fn delivery_records_the_link_with_the_row() {
    each_store(async |store, dialect| {
        let flow = unique("links");
        let source = unique("moloni/customers");
        store
            .enqueue(&flow, &[record("42", None, "Ana")], None, 0)
            .await
            .expect("enqueue");
        let row = store.claim(&flow, "w", 1, 60_000, 1).await.expect("claim").remove(0);
        let key = LinkKey {
            source: source.clone(),
            source_id: "42".into(),
            target: "ghl/contact".into(),
        };
        let link = LinkRow {
            target_id: "ocQHyuzHvysMo5N5VsXc".into(),
            written_hash: Some("h1".into()),
            written: Some(r#"{"email":"a@b.c"}"#.into()),
            source_updated_at: Some("2026-01-01T00:00:00Z".into()),
            parent_id: Some("contact-7".into()),
        };
        assert!(store
            .finish(
                row.id,
                "w",
                &Outcome::Delivered {
                    link: Some((key.clone(), link.clone()))
                },
                2
            )
            .await
            .expect("finish"));
        assert_eq!(store.link(&key).await.expect("link"), Some(link), "{dialect}");
        // The same GHL contact linked from another system does not answer for this one.
        assert_eq!(
            store
                .link_by_target("aroflo/clients", "ghl/contact", "ocQHyuzHvysMo5N5VsXc")
                .await
                .expect("reverse"),
            None
        );
        assert_eq!(
            store
                .link_by_target(&source, "ghl/contact", "ocQHyuzHvysMo5N5VsXc")
                .await
                .expect("reverse"),
            Some("42".to_owned()),
            "{dialect}"
        );
    })
    .await;
}

#[tokio::test]
async fn one_lease_holder_at_a_time() {
    each_store(async |store, dialect| {
        let name = unique("poll:moloni-customers");
        assert!(
            store.acquire_lease(&name, "host-a", 1_000, 0).await.expect("a"),
            "{dialect}"
        );
        assert!(
            !store.acquire_lease(&name, "host-b", 1_000, 500).await.expect("b"),
            "{dialect}"
        );
        assert!(
            store.acquire_lease(&name, "host-a", 1_000, 900).await.expect("renew"),
            "{dialect}"
        );
        assert!(
            !store.acquire_lease(&name, "host-b", 1_000, 1_899).await.expect("b"),
            "{dialect}: renewed until 1900"
        );
        assert!(
            store
                .acquire_lease(&name, "host-b", 1_000, 1_901)
                .await
                .expect("b after expiry"),
            "{dialect}"
        );
        assert!(
            !store
                .acquire_lease(&name, "host-a", 1_000, 1_902)
                .await
                .expect("a lost it"),
            "{dialect}"
        );
        store.release_lease(&name, "host-b").await.expect("release");
        assert!(
            store
                .acquire_lease(&name, "host-a", 1_000, 1_903)
                .await
                .expect("a again"),
            "{dialect}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_never_claim_the_same_row() {
    each_store(async |store, dialect| {
        let flow = unique("concurrent");
        let records: Vec<Record> = (0..300).map(|i| record(&i.to_string(), None, "x")).collect();
        store.enqueue(&flow, &records, None, 0).await.expect("enqueue");
        let workers = (0..4).map(|w| {
            let store = store.clone();
            let flow = flow.clone();
            tokio::spawn(async move {
                let worker = format!("w{w}");
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim(&flow, &worker, 7, 600_000, 1).await.expect("claim");
                    if batch.is_empty() {
                        return mine;
                    }
                    for row in batch {
                        assert!(store
                            .finish(row.id, &worker, &Outcome::Delivered { link: None }, 2)
                            .await
                            .expect("finish"));
                        mine.push(row.source_id);
                    }
                }
            })
        });
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.await.expect("worker"));
        }
        let total = all.len();
        all.sort();
        all.dedup();
        assert_eq!((total, all.len()), (300, 300), "{dialect}: every row once, none twice");
    })
    .await;
}

#[tokio::test]
async fn events_runs_claim_renewal_echo_links_and_the_webhook_log() {
    use tether_core::store::{EventKind, NewEvent, WebhookLogRow};
    each_store(async |store, dialect| {
        let flow = unique("two-way");
        let reverse = unique("reverse");
        store
            .enqueue(&flow, &[record("a1", None, "Ann")], None, 1)
            .await
            .expect("enqueue");
        let row = store.claim(&flow, "w", 10, 100, 1).await.expect("claim").remove(0);
        // A write in flight keeps its row: renewed past the lease, no one else may claim it.
        assert!(
            store.renew_claim(row.id, "w", 10_000).await.expect("renew"),
            "{dialect}"
        );
        assert!(
            store
                .claim(&flow, "other", 10, 100, 5_000)
                .await
                .expect("claim")
                .is_empty(),
            "{dialect}"
        );
        assert!(
            !store.renew_claim(row.id, "other", 20_000).await.expect("renew"),
            "only the holder renews"
        );

        let source = unique("crm_a");
        let key = LinkKey {
            source: format!("{source}/contacts"),
            source_id: "a1".into(),
            target: "crm_b/contact".into(),
        };
        let link = LinkRow {
            target_id: format!("b-{flow}"),
            written_hash: Some("h".into()),
            written: Some(r#"{"name":"Ann"}"#.into()),
            source_updated_at: None,
            parent_id: None,
        };
        let events = [NewEvent {
            flow: flow.clone(),
            source_id: "a1".into(),
            target_id: Some(link.target_id.clone()),
            kind: EventKind::Written,
            detail: Some(r#"{"name":"Ann"}"#.into()),
        }];
        assert!(store
            .finish_recording(
                row.id,
                "w",
                &Outcome::Delivered {
                    link: Some((key, link.clone()))
                },
                &events,
                6
            )
            .await
            .expect("finish"));
        let recorded = store.events(Some(&flow), None, 10).await.expect("events");
        assert_eq!(recorded.len(), 1, "{dialect}");
        assert_eq!((recorded[0].kind.as_str(), recorded[0].at), ("written", 6));
        assert!(store
            .events(Some(&flow), Some(EventKind::Dead), 10)
            .await
            .expect("events")
            .is_empty());

        // The record written into crm_b is found from crm_b's side, for echo checks; a link
        // from another source connector is not.
        let found = store
            .link_into(&source, "crm_b", &link.target_id)
            .await
            .expect("link_into");
        assert_eq!(found, Some(link.clone()), "{dialect}");
        assert_eq!(
            store
                .link_into("crm_c", "crm_b", &link.target_id)
                .await
                .expect("link_into"),
            None
        );

        // The newest queued change of a record in the reverse flows is the other side's.
        assert_eq!(
            store
                .pending_change(std::slice::from_ref(&reverse), "b1")
                .await
                .expect("pending"),
            None
        );
        store
            .enqueue(&reverse, &[record("b1", None, "v1"), record("b1", None, "v2")], None, 7)
            .await
            .expect("enqueue");
        let pending = store.pending_change(&[reverse], "b1").await.expect("pending");
        assert_eq!(
            pending.map(|r| r.fields["name"].clone()),
            Some("v2".into()),
            "{dialect}"
        );

        // A run's error stays visible after later successful runs, with both times.
        store.record_run(&flow, None, 10).await.expect("run");
        store
            .record_run(&flow, Some("source unreachable"), 20)
            .await
            .expect("run");
        store.record_run(&flow, None, 30).await.expect("run");
        let runs = store.flow_runs().await.expect("runs");
        let run = runs.iter().find(|r| r.flow == flow).expect("run row");
        assert_eq!(
            (
                run.last_run_at,
                run.last_ok_at,
                run.last_error.as_deref(),
                run.last_error_at
            ),
            (30, Some(30), Some("source unreachable"), Some(20)),
            "{dialect}"
        );

        let entry = WebhookLogRow {
            id: 0,
            received_at: 40,
            connector: flow.clone(),
            event_types: "ContactCreate".into(),
            verdict: "verified".into(),
            status: 200,
            queued: 1,
            detail: None,
        };
        store.log_webhook(&entry).await.expect("log");
        let logged = store.webhook_log(1_000).await.expect("log");
        let mine = logged.iter().find(|w| w.connector == flow).expect("logged");
        assert_eq!(
            (mine.verdict.as_str(), mine.queued, mine.status),
            ("verified", 1, 200),
            "{dialect}"
        );
    })
    .await;
}

#[tokio::test]
async fn console_queries_follow_links_parents_and_count_todays_events() {
    use tether_core::store::{EventKind, NewEvent};
    each_store(async |store, dialect| {
        let run = unique("run");
        let contacts = unique("contacts");
        let tasks = unique("tasks");
        let crm = format!("{run}-crm/contacts");
        let ghl = format!("{run}-ghl/contact");
        let ghl_task = format!("{run}-ghl/task");
        let contact_id = format!("c-{run}");
        // Unique per run: reruns against one PostgreSQL database keep earlier runs' events.
        let customer_id = format!("42-{run}");
        let deliver = async |flow: &str, source_id: &str, key: LinkKey, link: LinkRow, at: i64| {
            store
                .enqueue(flow, &[record(source_id, None, "x")], None, at)
                .await
                .expect("enqueue");
            let row = store.claim(flow, "w", 1, 60_000, at).await.expect("claim").remove(0);
            let event = NewEvent {
                flow: flow.to_owned(),
                source_id: source_id.to_owned(),
                target_id: Some(link.target_id.clone()),
                kind: EventKind::Written,
                detail: None,
            };
            assert!(store
                .finish_recording(
                    row.id,
                    "w",
                    &Outcome::Delivered {
                        link: Some((key, link))
                    },
                    &[event],
                    at
                )
                .await
                .expect("finish"));
        };
        let link = |target_id: &str, parent_id: Option<&str>| LinkRow {
            target_id: target_id.to_owned(),
            written_hash: None,
            written: None,
            source_updated_at: None,
            parent_id: parent_id.map(str::to_owned),
        };
        deliver(
            &contacts,
            &customer_id,
            LinkKey {
                source: crm.clone(),
                source_id: customer_id.clone(),
                target: ghl.clone(),
            },
            link(&contact_id, None),
            1_000,
        )
        .await;
        deliver(
            &tasks,
            "t1",
            LinkKey {
                source: format!("{run}-crm/tasks"),
                source_id: "t1".into(),
                target: ghl_task.clone(),
            },
            link(&format!("task-{run}"), Some(&contact_id)),
            5_000,
        )
        .await;

        // The contact seen from GHL's side finds the CRM record it came from.
        let edges = store.links_touching(&ghl, &contact_id).await.expect("links");
        assert_eq!(edges.len(), 1, "{dialect}");
        assert_eq!(
            (edges[0].source.as_str(), edges[0].source_id.as_str()),
            (crm.as_str(), customer_id.as_str())
        );
        assert!(store.links_touching(&crm, &contact_id).await.expect("links").is_empty());
        assert_eq!(
            store.systems_of_id(&contact_id).await.expect("systems"),
            vec![ghl.clone()]
        );
        // Its task, written under it.
        let children = store.links_under(&contact_id, 10).await.expect("children");
        assert_eq!(children.len(), 1, "{dialect}");
        assert_eq!(children[0].target, ghl_task);
        // Events by either side's id.
        assert_eq!(store.events_of_record(&customer_id, 10).await.expect("events").len(), 1);
        assert_eq!(store.events_of_record(&contact_id, 10).await.expect("events").len(), 1);
        // Counted since a time: the contact's write at 1 000 is before, the task's at 5 000 after.
        let counts = store.event_counts_since(2_000).await.expect("counts");
        let ours: Vec<_> = counts
            .iter()
            .filter(|c| c.flow == contacts || c.flow == tasks)
            .map(|c| (c.flow.clone(), c.kind.clone(), c.count))
            .collect();
        assert_eq!(ours, vec![(tasks.clone(), "written".to_owned(), 1)], "{dialect}");
    })
    .await;
}

#[tokio::test]
async fn an_alert_key_is_open_once_and_resolves_once() {
    each_store(async |store, dialect| {
        let key = unique("dead_letters:flow");
        let other = unique("stalled:flow");
        assert!(
            store.open_alert(&key, "12 dead letters", 10).await.expect("open"),
            "{dialect}"
        );
        assert!(
            !store.open_alert(&key, "13 dead letters", 11).await.expect("open again"),
            "{dialect}: already open"
        );
        assert!(store.open_alert(&other, "stalled", 12).await.expect("open other"));
        let open: Vec<(String, String)> = store
            .open_alerts()
            .await
            .expect("open alerts")
            .into_iter()
            .filter(|a| a.key == key || a.key == other)
            .map(|a| (a.key, a.text))
            .collect();
        assert_eq!(
            open,
            [
                (key.clone(), "12 dead letters".into()),
                (other.clone(), "stalled".into())
            ],
            "{dialect}: the first text stays"
        );

        assert!(store.resolve_alert(&key, 20).await.expect("resolve"), "{dialect}");
        assert!(
            !store.resolve_alert(&key, 21).await.expect("resolve again"),
            "{dialect}"
        );
        assert!(store.open_alerts().await.expect("open").iter().all(|a| a.key != key));

        // The same condition later is a new incident; the history keeps both.
        assert!(
            store.open_alert(&key, "11 dead letters", 30).await.expect("reopen"),
            "{dialect}"
        );
        let history: Vec<(i64, Option<i64>)> = store
            .alerts(1_000)
            .await
            .expect("history")
            .into_iter()
            .filter(|a| a.key == key)
            .map(|a| (a.opened_at, a.resolved_at))
            .collect();
        assert_eq!(history, [(30, None), (10, Some(20))], "{dialect}: newest first");
    })
    .await;
}

#[tokio::test]
async fn flow_progress_counts_dead_and_due_rows() {
    each_store(async |store, dialect| {
        let flow = unique("progress");
        let records = [record("1", None, "a"), record("2", None, "b"), record("3", None, "c")];
        store.enqueue(&flow, &records, None, 100).await.expect("enqueue");
        let mine = |all: Vec<tether_core::store::FlowProgress>| all.into_iter().find(|p| p.flow == flow);
        let before = mine(store.flow_progress(100).await.expect("progress")).expect("the flow");
        assert_eq!(
            (before.dead, before.due, before.oldest_due_at, before.last_finished_at),
            (0, 3, Some(100), None),
            "{dialect}"
        );
        let rows = store.claim(&flow, "w", 10, 60_000, 200).await.expect("claim");
        assert_eq!(rows.len(), 3, "{dialect}");
        let delivered = Outcome::Delivered { link: None };
        assert!(store.finish(rows[0].id, "w", &delivered, 300).await.expect("done"));
        let dead = Outcome::Dead {
            error: "invalid".into(),
        };
        assert!(store.finish(rows[1].id, "w", &dead, 400).await.expect("dead"));
        let retry = Outcome::Retry {
            at_ms: 1_000,
            error: "HTTP 503".into(),
        };
        assert!(store.finish(rows[2].id, "w", &retry, 500).await.expect("retry"));
        let not_due = mine(store.flow_progress(999).await.expect("progress")).expect("the flow");
        assert_eq!(
            (
                not_due.dead,
                not_due.due,
                not_due.oldest_due_at,
                not_due.last_finished_at
            ),
            (1, 0, None, Some(400)),
            "{dialect}"
        );
        let due = mine(store.flow_progress(1_000).await.expect("progress")).expect("the flow");
        assert_eq!((due.due, due.oldest_due_at), (1, Some(1_000)), "{dialect}");
    })
    .await;
}
