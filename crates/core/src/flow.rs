//! Flow files (`flows/*.toml`): a source stream, a target action, a mapping, dedupe keys, the
//! parent a record follows, a conflict policy, and fixture tests.
//!
//! Loading is pure (the caller reads the files) and checks everything against the connectors'
//! manifests before anything runs; every problem in every file is reported at once, located.
//! A flow with `enabled = false` is loaded and checked like any other (its fixtures run), but
//! nothing runs it: no poller, no webhook intake, no `sync` or `backfill`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tether_abi::{Fields, Manifest, TriggerKind};
use toml::Spanned;

use crate::config::{ConfigError, SourceMap};
use crate::mapping::{Mapping, MappingOptions, MappingSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    #[serde(default)]
    description: String,
    /// `false` switches the flow off without deleting its file.
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    source: RawSource,
    target: RawTarget,
    #[serde(default, rename = "match")]
    match_keys: Option<RawMatch>,
    parent: Option<RawParent>,
    conflict: Option<Spanned<ConflictPolicy>>,
    /// Region for phone numbers written without a country code ("PT", "AU", "US").
    phone_region: Option<Spanned<String>>,
    #[serde(default)]
    mapping: MappingSpec,
    #[serde(default, rename = "test")]
    tests: Vec<RawFixture>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    connector: Spanned<String>,
    stream: Spanned<String>,
    trigger: Spanned<String>,
    every: Option<Spanned<String>>,
    cron: Option<Spanned<String>>,
    window: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    connector: Spanned<String>,
    action: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    keys: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParent {
    flow: Spanned<String>,
    field: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFixture {
    name: String,
    #[serde(default)]
    id: Option<String>,
    record: toml::Table,
    expect: Option<toml::Table>,
    expect_error: Option<String>,
    #[serde(default)]
    now: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

/// What a flow file's `enabled` key says, read without checking the rest of the file (for
/// `tether status`, which loads no plugins): absent is `true`; `None` when the text is not TOML
/// or `enabled` is not a boolean (`tether check` locates that).
pub fn declared_enabled(text: &str) -> Option<bool> {
    let table: toml::Table = toml::from_str(text).ok()?;
    match table.get("enabled") {
        None => Some(true),
        Some(value) => value.as_bool(),
    }
}

/// Which side wins when both changed the same record (two-way flows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    SourceWins,
    TargetWins,
    NewestWins,
}

impl std::fmt::Display for ConflictPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SourceWins => "source_wins",
            Self::TargetWins => "target_wins",
            Self::NewestWins => "newest_wins",
        })
    }
}

/// How a flow's source is driven.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    Poll {
        every: Duration,
    },
    /// Changes arrive by webhook; `repair_every` also polls, to catch what a lost webhook missed.
    Webhook {
        repair_every: Option<Duration>,
    },
    Schedule {
        cron: String,
    },
    Backfill {
        window: Duration,
    },
}

pub const DEFAULT_POLL: Duration = Duration::from_secs(300);
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(7 * 86_400);
/// The `now` fixture tests run at, unless they set their own: results must not depend on the day.
pub const FIXTURE_NOW: &str = "2026-01-01T00:00:00Z";

/// A fixture test: an input record and the target input it must map to (or an error).
#[derive(Clone, Debug, PartialEq)]
pub struct Fixture {
    pub name: String,
    pub id: String,
    pub record: Fields,
    pub expect: Result<Fields, String>,
    pub now: String,
}

/// A flow that loaded: every reference resolved, the mapping compiled.
#[derive(Debug)]
pub struct Flow {
    pub name: String,
    pub description: String,
    /// `enabled = false` in the file: checked and tested, never run.
    pub enabled: bool,
    pub source_connector: String,
    pub stream: String,
    pub trigger: Trigger,
    pub target_connector: String,
    pub action: String,
    /// The action for a record already linked, when `action` creates: `task.update` for
    /// `task.create`.
    pub update_action: Option<String>,
    /// The source stream is read one parent at a time: a poll sweeps the parents the `[parent]`
    /// flow linked.
    pub sweeps_parents: bool,
    /// `action` addresses an existing target record (`task.update`): a record with no link has
    /// nothing to write to, and is skipped rather than failed.
    pub needs_link: bool,
    pub match_keys: Vec<String>,
    /// The flow whose links give this record's parent, and the source field holding its id.
    pub parent: Option<(String, String)>,
    /// Where the parent flow is named, to locate a reference to a flow that does not exist.
    parent_at: Option<ConfigError>,
    pub conflict: Option<ConflictPolicy>,
    pub mapping: Mapping,
    pub fixtures: Vec<Fixture>,
}

/// What a flow may refer to: each configured connector instance and its type's manifest.
pub type Instances<'a> = BTreeMap<&'a str, &'a Manifest>;

fn known<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

impl Flow {
    /// Parses and checks one flow file. `name` is the flow's name (its file stem).
    pub fn load(name: &str, file: &Path, text: &str, instances: &Instances<'_>) -> Result<Flow, Vec<ConfigError>> {
        let source = SourceMap { file, text };
        let raw: RawFlow = toml::from_str(text).map_err(|e| vec![source.error(e.span(), e.message().to_owned())])?;
        let mut errors = Vec::new();
        let mut error = |span: std::ops::Range<usize>, message: String, hint: Option<String>| {
            let mut e = source.error(Some(span), message);
            e.hint = hint;
            errors.push(e);
        };

        let source_manifest = instances.get(raw.source.connector.get_ref().as_str()).copied();
        if source_manifest.is_none() {
            error(
                raw.source.connector.span(),
                format!("unknown connector `{}`", raw.source.connector.get_ref()),
                Some(format!(
                    "connectors in tether.toml: {}",
                    known(instances.keys().copied())
                )),
            );
        }
        let stream = source_manifest.and_then(|m| {
            let found = m.stream(raw.source.stream.get_ref());
            if found.is_none() {
                error(
                    raw.source.stream.span(),
                    format!(
                        "connector `{}` has no stream `{}`",
                        raw.source.connector.get_ref(),
                        raw.source.stream.get_ref()
                    ),
                    Some(format!(
                        "its streams: {}",
                        known(m.streams.iter().map(|s| s.name.as_str()))
                    )),
                );
            }
            found
        });

        let duration = |value: &Option<Spanned<String>>,
                        default: Duration,
                        errors: &mut Vec<(std::ops::Range<usize>, String)>| match value {
            None => default,
            Some(text) => humantime::parse_duration(text.get_ref()).unwrap_or_else(|e| {
                errors.push((text.span(), format!("`{}` is not a duration ({e})", text.get_ref())));
                default
            }),
        };
        let mut duration_errors = Vec::new();
        let trigger = match raw.source.trigger.get_ref().as_str() {
            "poll" => Some((
                TriggerKind::Poll,
                Trigger::Poll {
                    every: duration(&raw.source.every, DEFAULT_POLL, &mut duration_errors),
                },
            )),
            "webhook" => Some((
                TriggerKind::Webhook,
                Trigger::Webhook {
                    repair_every: raw
                        .source
                        .every
                        .as_ref()
                        .map(|_| duration(&raw.source.every, DEFAULT_POLL, &mut duration_errors)),
                },
            )),
            "backfill" => Some((
                TriggerKind::Backfill,
                Trigger::Backfill {
                    window: duration(&raw.source.window, DEFAULT_WINDOW, &mut duration_errors),
                },
            )),
            "schedule" => match &raw.source.cron {
                Some(cron) => {
                    if let Err(e) = cron.get_ref().parse::<croner::Cron>() {
                        duration_errors.push((
                            cron.span(),
                            format!("`{}` is not a cron expression ({e})", cron.get_ref()),
                        ));
                    }
                    Some((
                        TriggerKind::Poll,
                        Trigger::Schedule {
                            cron: cron.get_ref().clone(),
                        },
                    ))
                }
                None => {
                    duration_errors.push((
                        raw.source.trigger.span(),
                        "a schedule trigger needs `cron = \"...\"`".to_owned(),
                    ));
                    None
                }
            },
            other => {
                duration_errors.push((
                    raw.source.trigger.span(),
                    format!("unknown trigger `{other}`; use poll, webhook, schedule or backfill"),
                ));
                None
            }
        };
        for (span, message) in duration_errors {
            error(span, message, None);
        }
        if let (Some(stream), Some((kind, _))) = (stream, &trigger) {
            if !stream.triggers.contains(kind) {
                error(
                    raw.source.trigger.span(),
                    format!(
                        "stream `{}` cannot be driven by `{}`",
                        stream.name,
                        raw.source.trigger.get_ref()
                    ),
                    Some(format!(
                        "it supports: {}",
                        known(stream.triggers.iter().map(|t| t.as_str()))
                    )),
                );
            }
        }

        // A stream listed one parent at a time is polled by sweeping the parents a `[parent]`
        // flow linked; without one there is nothing to sweep.
        let sweeps_parents = stream.is_some_and(|s| s.per_parent);
        let polls = !matches!(trigger, Some((_, Trigger::Webhook { repair_every: None })) | None);
        if sweeps_parents && polls && raw.parent.is_none() {
            let at = raw
                .source
                .every
                .as_ref()
                .map_or(raw.source.trigger.span(), Spanned::span);
            error(
                at,
                format!(
                    "stream `{}` is listed per `{}` record, so polling it needs `[parent]`",
                    raw.source.stream.get_ref(),
                    stream.and_then(|s| s.parent.as_deref()).unwrap_or("parent")
                ),
                Some(
                    "add `[parent] flow = \"...\", field = \"...\"` naming the flow that links the parents, \
                     or use `trigger = \"webhook\"` without `every`"
                        .to_owned(),
                ),
            );
        }

        let target_manifest = instances.get(raw.target.connector.get_ref().as_str()).copied();
        match target_manifest {
            None => error(
                raw.target.connector.span(),
                format!("unknown connector `{}`", raw.target.connector.get_ref()),
                Some(format!(
                    "connectors in tether.toml: {}",
                    known(instances.keys().copied())
                )),
            ),
            Some(m) if m.action(raw.target.action.get_ref()).is_none() => error(
                raw.target.action.span(),
                format!(
                    "connector `{}` has no action `{}`",
                    raw.target.connector.get_ref(),
                    raw.target.action.get_ref()
                ),
                Some(format!(
                    "its actions: {}",
                    known(m.actions.iter().map(|a| a.name.as_str()))
                )),
            ),
            Some(_) => {}
        }

        // A record written before is updated, not created again: `kind.create` becomes
        // `kind.update` once linked, when the target has that action.
        let update_action = raw
            .target
            .action
            .get_ref()
            .strip_suffix(".create")
            .map(|kind| format!("{kind}.update"))
            .filter(|update| target_manifest.is_some_and(|m| m.action(update).is_some()));
        let needs_link = target_manifest
            .and_then(|m| m.action(raw.target.action.get_ref()))
            .is_some_and(|a| a.needs_target_id);

        // Dedupe keys name fields the mapping produces.
        let produced: BTreeSet<&str> = raw
            .mapping
            .fields
            .keys()
            .chain(raw.mapping.defaults.keys())
            .map(|k| k.get_ref().as_str())
            .collect();
        let match_keys: Vec<String> = raw
            .match_keys
            .iter()
            .flat_map(|m| &m.keys)
            .map(|k| {
                if !produced.contains(k.get_ref().as_str()) {
                    error(
                        k.span(),
                        format!("match key `{}` is not a field the mapping produces", k.get_ref()),
                        Some(format!("mapped fields: {}", known(produced.iter().copied()))),
                    );
                }
                k.get_ref().clone()
            })
            .collect();

        let source_fields: Option<Vec<String>> = stream
            .filter(|s| !s.fields.is_empty())
            .map(|s| s.fields.iter().map(|f| f.name.clone()).collect());
        if let (Some(parent), Some(fields)) = (&raw.parent, &source_fields) {
            if !fields.iter().any(|f| f == parent.field.get_ref()) {
                error(
                    parent.field.span(),
                    format!(
                        "stream `{}` has no field `{}`",
                        raw.source.stream.get_ref(),
                        parent.field.get_ref()
                    ),
                    None,
                );
            }
        }

        let options = MappingOptions {
            default_region: raw.phone_region.as_ref().map(|r| r.get_ref().clone()),
            source_fields: source_fields.clone(),
        };
        let mapping = match Mapping::compile(&raw.mapping, &options) {
            Ok(mapping) => Some(mapping),
            Err(mapping_errors) => {
                errors.extend(mapping_errors.iter().map(|e| e.locate(&source)));
                None
            }
        };

        let fixtures = raw
            .tests
            .iter()
            .map(|t| Fixture {
                name: t.name.clone(),
                id: t.id.clone().unwrap_or_else(|| "fixture".to_owned()),
                record: table_to_fields(&t.record),
                expect: match (&t.expect, &t.expect_error) {
                    (_, Some(message)) => Err(message.clone()),
                    (Some(expect), None) => Ok(table_to_fields(expect)),
                    (None, None) => Ok(Fields::new()),
                },
                now: t.now.clone().unwrap_or_else(|| FIXTURE_NOW.to_owned()),
            })
            .collect();

        match (mapping, trigger) {
            (Some(mapping), Some((_, trigger))) if errors.is_empty() => Ok(Flow {
                name: name.to_owned(),
                description: raw.description,
                enabled: raw.enabled,
                source_connector: raw.source.connector.into_inner(),
                stream: raw.source.stream.into_inner(),
                trigger,
                target_connector: raw.target.connector.into_inner(),
                action: raw.target.action.into_inner(),
                update_action,
                sweeps_parents,
                needs_link,
                match_keys,
                parent_at: raw
                    .parent
                    .as_ref()
                    .map(|p| source.error(Some(p.flow.span()), String::new())),
                parent: raw.parent.map(|p| (p.flow.into_inner(), p.field.into_inner())),
                conflict: raw.conflict.map(Spanned::into_inner),
                mapping,
                fixtures,
            }),
            _ => Err(errors),
        }
    }
}

impl Flow {
    /// The system this flow reads: `instance/stream` (`moloni_pt/customers`).
    pub fn source_system(&self) -> String {
        format!("{}/{}", self.source_connector, self.stream)
    }

    /// The record kind this flow writes: `instance/kind`, the kind being the action's first part
    /// (`ghl/contact` for `contact.upsert`).
    pub fn target_system(&self) -> String {
        let kind = self.action.split('.').next().unwrap_or(&self.action);
        format!("{}/{kind}", self.target_connector)
    }

    /// The action that writes a record: `update_action` once it is linked, else `action`.
    pub fn action_for(&self, linked: bool) -> &str {
        match (&self.update_action, linked) {
            (Some(update), true) => update,
            _ => &self.action,
        }
    }

    /// How often the source is read, when it is read on an interval.
    pub fn poll_every(&self) -> Option<Duration> {
        match &self.trigger {
            Trigger::Poll { every } => Some(*every),
            Trigger::Webhook { repair_every } => *repair_every,
            Trigger::Schedule { .. } | Trigger::Backfill { .. } => None,
        }
    }
}

/// Where a flow's records meet other flows' links.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Relations {
    /// A record waits until its parent is linked by the parent flow, and is written under it.
    pub parent: Option<ParentLink>,
    /// Flows writing the other way between the same two connectors: their queued changes are
    /// the target side of a conflict.
    pub reverse_flows: Vec<String>,
    /// Those flows' links, as (source system, target system): a record of this flow's source
    /// that one of them wrote is linked to the record it came from (a GHL task that
    /// mloflo-tasks created updates that MLOFLO task), though this flow never wrote it.
    pub reverse_links: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentLink {
    /// The parent flow's systems: its links key on these.
    pub source: String,
    pub target: String,
    /// The field of this flow's records holding the parent's id.
    pub field: String,
    /// This flow reads the system the parent flow writes (GHL tasks of contacts that an AroFlo
    /// flow created): the field holds the parent's *target* id, and the parent in this flow's
    /// target is the record the parent flow read.
    pub reverse: bool,
}

/// How `flow` relates to the other flows of the set (which must have passed [`check_set`]).
pub fn relations(flows: &[Flow], flow: &Flow) -> Relations {
    let parent = flow.parent.as_ref().and_then(|(name, field)| {
        flows.iter().find(|f| &f.name == name).map(|parent| ParentLink {
            source: parent.source_system(),
            target: parent.target_system(),
            field: field.clone(),
            reverse: flow.source_connector == parent.target_connector,
        })
    });
    let reverse: Vec<&Flow> = flows
        .iter()
        .filter(|f| f.source_connector == flow.target_connector && f.target_connector == flow.source_connector)
        .collect();
    Relations {
        parent,
        reverse_flows: reverse.iter().map(|f| f.name.clone()).collect(),
        reverse_links: reverse.iter().map(|f| (f.source_system(), f.target_system())).collect(),
    }
}

/// Checks what only a set of flows can: parents name flows that exist, and an enabled flow's
/// parent is enabled (its records would otherwise wait for links that never come).
pub fn check_set(flows: &[Flow]) -> Vec<ConfigError> {
    let names: BTreeSet<&str> = flows.iter().map(|f| f.name.as_str()).collect();
    let mut errors = Vec::new();
    for flow in flows {
        if let (Some((parent, _)), Some(at)) = (&flow.parent, &flow.parent_at) {
            match flows.iter().find(|f| &f.name == parent) {
                None => {
                    let mut error = at.clone();
                    error.message = format!("parent flow `{parent}` does not exist");
                    error.hint = Some(format!("flows: {}", known(names.iter().copied())));
                    errors.push(error);
                }
                Some(p) if flow.enabled && !p.enabled => {
                    let mut error = at.clone();
                    error.message = format!("parent flow `{parent}` is disabled (`enabled = false`)");
                    error.hint = Some(format!(
                        "enable `{parent}`, or set `enabled = false` in `{}` too",
                        flow.name
                    ));
                    errors.push(error);
                }
                Some(_) => {}
            }
        }
    }
    errors
}

fn table_to_fields(table: &toml::Table) -> Fields {
    match serde_json::to_value(table) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => Fields::new(),
    }
}
