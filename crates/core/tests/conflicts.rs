//! Two-way conflict policies, data-driven: the same edit race under each policy. The engine and
//! store are real (SQLite); the connectors are the edge of the world, recording what is written.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tether_abi::*;
use tether_core::engine::{FlowRun, RetryPolicy, SyncReport};
use tether_core::flow::{self, Flow};
use tether_core::store::{EventKind, LinkKey, LinkRow, Outcome, Store};

/// Records writes; answers with a fixed target id.
#[derive(Default)]
struct Recorder {
    writes: Mutex<Vec<WriteRequest>>,
}

impl Connector for Recorder {
    fn check(&self) -> Result<CheckReport, ConnectorError> {
        Ok(CheckReport::default())
    }
    fn read(&self, _: ReadRequest) -> Result<Page, ConnectorError> {
        Ok(Page {
            records: Vec::new(),
            next: None,
            has_more: false,
        })
    }
    fn write(&self, request: WriteRequest) -> Result<WriteResult, ConnectorError> {
        let id = request.target_id.clone().unwrap_or_else(|| "new".into());
        self.writes
            .lock()
            .map_err(|_| ConnectorError::fatal("poisoned"))?
            .push(request);
        Ok(WriteResult {
            target_id: Some(id),
            returned: Fields::new(),
        })
    }
}

fn manifest() -> Manifest {
    Manifest {
        name: "crm".into(),
        version: "1".into(),
        description: "a CRM".into(),
        config: Vec::new(),
        streams: vec![StreamDef::new("contacts", "contacts", &[TriggerKind::Poll])
            .fields([FieldDef::new("name", FieldKind::String)])],
        actions: vec![ActionDef::new("contact.upsert", "upsert").fields([FieldDef::new("name", FieldKind::String)])],
    }
}

fn flow(name: &str, from: &str, to: &str, conflict: Option<&str>, instances: &flow::Instances<'_>) -> Flow {
    let conflict = conflict.map_or(String::new(), |c| format!("conflict = \"{c}\"\n"));
    let text = format!(
        "{conflict}[source]\nconnector = \"{from}\"\nstream = \"contacts\"\ntrigger = \"poll\"\n\
         [target]\nconnector = \"{to}\"\naction = \"contact.upsert\"\n[mapping.fields]\nname = \"name\"\n"
    );
    Flow::load(name, Path::new(&format!("{name}.toml")), &text, instances).unwrap_or_else(|e| {
        panic!(
            "{name}: {}",
            e.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        )
    })
}

fn change(id: &str, name: &str, at: &str) -> Record {
    let mut fields = Fields::new();
    fields.insert("name".into(), name.into());
    Record {
        id: id.into(),
        updated_at: Some(at.into()),
        deleted: false,
        parent: None,
        event: None,
        fields,
    }
}

/// How B's side of the race reached tether before A's change is delivered.
#[derive(Clone, Copy, Debug)]
enum Theirs {
    /// Still queued in the reverse flow.
    Queued,
    /// Already written into A by the reverse flow (its link remembers when B changed).
    Applied,
}

struct Case {
    policy: Option<&'static str>,
    /// When A's change (the one this flow delivers) and B's were made.
    ours: &'static str,
    theirs: &'static str,
    how: Theirs,
    written: bool,
}

const EARLY: &str = "2026-01-01T10:00:00Z";
const MID: &str = "2026-01-01T11:00:00Z";
const LATE: &str = "2026-01-01T12:00:00Z";

const fn case(
    policy: Option<&'static str>,
    ours: &'static str,
    theirs: &'static str,
    how: Theirs,
    written: bool,
) -> Case {
    Case {
        policy,
        ours,
        theirs,
        how,
        written,
    }
}

const CASES: &[Case] = &[
    case(None, EARLY, MID, Theirs::Queued, true),
    case(Some("source_wins"), EARLY, MID, Theirs::Queued, true),
    // A queued change of the target wins whatever its time.
    case(Some("target_wins"), LATE, MID, Theirs::Queued, false),
    case(Some("newest_wins"), EARLY, MID, Theirs::Queued, false),
    case(Some("newest_wins"), LATE, MID, Theirs::Queued, true),
    // An applied one wins over older changes only: a later edit in A is a new change.
    case(None, EARLY, MID, Theirs::Applied, true),
    case(Some("source_wins"), EARLY, MID, Theirs::Applied, true),
    case(Some("target_wins"), EARLY, MID, Theirs::Applied, false),
    case(Some("target_wins"), LATE, MID, Theirs::Applied, true),
    case(Some("newest_wins"), EARLY, MID, Theirs::Applied, false),
    case(Some("newest_wins"), LATE, MID, Theirs::Applied, true),
];

/// Delivers one queued row of `flow` to a link `key` → `target_id`, as a finished run would have.
async fn delivered(store: &Store, flow: &str, record: Record, key: LinkKey, target_id: &str, written: &str, at: i64) {
    let updated_at = record.updated_at.clone();
    store.enqueue(flow, &[record], None, at).await.expect("q");
    let row = store.claim(flow, "w", 1, 1_000, at).await.expect("claim").remove(0);
    let link = LinkRow {
        target_id: target_id.into(),
        written_hash: Some("old".into()),
        written: Some(written.into()),
        source_updated_at: updated_at,
        parent_id: None,
    };
    store
        .finish(
            row.id,
            "w",
            &Outcome::Delivered {
                link: Some((key, link)),
            },
            at + 1,
        )
        .await
        .expect("finish");
}

#[tokio::test]
async fn each_policy_decides_a_race_between_both_sides() {
    let crm = manifest();
    let instances: flow::Instances<'_> = BTreeMap::from([("a", &crm), ("b", &crm)]);
    for (n, case) in CASES.iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&format!("sqlite://{}", dir.path().join("s.sqlite").display()))
            .await
            .expect("store");
        let flows = vec![
            flow("a-to-b", "a", "b", case.policy, &instances),
            flow("b-to-a", "b", "a", None, &instances),
        ];
        let relations = flow::relations(&flows, &flows[0]);
        assert_eq!(relations.reverse_flows, ["b-to-a"]);

        // a1 was written to b1 before; now both sides changed it.
        let a_to_b = LinkKey {
            source: "a/contacts".into(),
            source_id: "a1".into(),
            target: "b/contact".into(),
        };
        let seed = change("a1", "seed", "2026-01-01T09:00:00Z");
        delivered(&store, "a-to-b", seed, a_to_b, "b1", r#"{"name":"seed"}"#, 1).await;
        let theirs = change("b1", "from B", case.theirs);
        match case.how {
            Theirs::Queued => {
                store.enqueue("b-to-a", &[theirs], None, 3).await.expect("q");
            }
            Theirs::Applied => {
                let b_to_a = LinkKey {
                    source: "b/contacts".into(),
                    source_id: "b1".into(),
                    target: "a/contact".into(),
                };
                delivered(&store, "b-to-a", theirs, b_to_a, "a1", r#"{"name":"from B"}"#, 3).await;
            }
        }
        store
            .enqueue("a-to-b", &[change("a1", "from A", case.ours)], None, 5)
            .await
            .expect("q");

        let target = Arc::new(Recorder::default());
        let target_dyn: Arc<dyn Connector> = target.clone();
        let run = FlowRun {
            flow: &flows[0],
            relations: &relations,
            source: Arc::new(Recorder::default()),
            store: &store,
            commits: None,
            priority: Priority::Live,
            retry: RetryPolicy::default(),
            clock: &|| 10,
        };
        let mut report = SyncReport::default();
        run.deliver(&target_dyn, "w", &mut report).await.expect("deliver");
        let writes = target.writes.lock().expect("writes").len();
        let what = format!("case {n} ({:?}, {:?})", case.policy, case.how);
        assert_eq!(writes == 1, case.written, "{what}: {report:?}");
        assert_eq!(report.conflicts, usize::from(!case.written), "{what}");
        let conflicts = store
            .events(Some("a-to-b"), Some(EventKind::Conflict), 10)
            .await
            .expect("events");
        assert_eq!(conflicts.len(), usize::from(!case.written), "{what}");
    }
}
