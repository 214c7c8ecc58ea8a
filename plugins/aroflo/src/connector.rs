//! The connector: config, signed requests through the host, reads and writes.

use std::collections::HashMap;

use serde_json::{Map, Value};
use tether_abi::{
    CheckReport, Connector, ConnectorError, Fields, Host, HttpMethod, HttpRequest, Page, ReadPosition, ReadRequest,
    Record, WriteRequest, WriteResult,
};

use crate::envelope::{self, list, member, text_of};
use crate::error::AroFloError;
use crate::query::{header_timestamp, parse_datetime, where_datetime, Query, MAX_PAGE};
use crate::records;
use crate::sign::{encode_component, Credentials};
use crate::xml::Xml;

pub const DEFAULT_BASE_URL: &str = "https://api.aroflo.com/";
/// Where a feed starts: explicit and old enough that the 30-day default filter never applies.
const EPOCH_START: &str = "2000/01/01 00:00:00";
/// Ids per `IN` clause when fetching changed records, so the URL stays a sane length.
const IDS_PER_FETCH: usize = 100;

#[derive(Clone, Debug)]
pub struct Settings {
    pub base_url: String,
    pub credentials: Credentials,
    pub default_org_id: Option<String>,
    pub default_task_type_id: Option<String>,
    pub note_filter: String,
}

fn config_text(config: &Fields, key: &str) -> Option<String> {
    match config.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Settings {
    pub fn from_fields(config: &Fields) -> Result<Self, AroFloError> {
        let required =
            |key: &str| config_text(config, key).ok_or_else(|| AroFloError::Config(format!("`{key}` is missing")));
        let mut base_url = config_text(config, "base_url").unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        if !base_url.ends_with('/') {
            base_url.push('/');
        }
        Ok(Settings {
            base_url,
            credentials: Credentials {
                uencoded: required("uencoded")?,
                pencoded: required("pencoded")?,
                org_encoded: required("org_encoded")?,
                secret_key: required("secret_key")?,
                host_ip: config_text(config, "host_ip"),
            },
            default_org_id: config_text(config, "default_org_id"),
            default_task_type_id: config_text(config, "default_task_type_id"),
            note_filter: config_text(config, "note_filter").unwrap_or_else(|| "Internal Only".to_owned()),
        })
    }
}

pub struct Aroflo {
    host: Host,
    /// A config problem is reported by every call rather than by `open`, so `tether plugins` and
    /// the loader can open an unconfigured instance to describe it.
    settings: Result<Settings, String>,
}

/// The AroFlo zone a lastupdate-driven stream watches, and how its records are fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feed {
    Clients,
    Contacts,
    Tasks,
    TaskNotes,
}

impl Feed {
    fn of(stream: &str) -> Option<Feed> {
        match stream {
            "clients" => Some(Feed::Clients),
            "contacts" => Some(Feed::Contacts),
            "tasks" => Some(Feed::Tasks),
            "tasknotes" => Some(Feed::TaskNotes),
            _ => None,
        }
    }

    fn zone(self) -> &'static str {
        match self {
            Feed::Clients | Feed::Contacts => "clients",
            Feed::Tasks | Feed::TaskNotes => "tasks",
        }
    }

    fn id_field(self) -> &'static str {
        match self {
            Feed::Clients | Feed::Contacts => "clientid",
            Feed::Tasks | Feed::TaskNotes => "taskid",
        }
    }

    fn join(self) -> Option<&'static str> {
        match self {
            Feed::Clients => None,
            Feed::Contacts => Some("contacts"),
            Feed::Tasks | Feed::TaskNotes => Some("notes"),
        }
    }

    /// The zone's own last-change field, for window reads.
    fn updated_field(self) -> &'static str {
        match self {
            Feed::Clients | Feed::Contacts => "lastupdatedatetimeutc",
            Feed::Tasks | Feed::TaskNotes => "lastupdateddatetimeutc",
        }
    }

    fn records(self, item: &Value, updated_ms: Option<i64>) -> Vec<Record> {
        match self {
            Feed::Clients => records::client(item, updated_ms).into_iter().collect(),
            Feed::Contacts => {
                let client_id = text_of(item, "clientid");
                list(member(item, "contacts"))
                    .iter()
                    .filter_map(|c| records::contact(c, client_id.clone(), updated_ms))
                    .collect()
            }
            Feed::Tasks => records::task(item, updated_ms).into_iter().collect(),
            Feed::TaskNotes => records::notes_of_task(item),
        }
    }
}

/// A feed position: everything changed after `since` (AroFlo's second precision), page `page`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cursor {
    since: String,
    page: u32,
}

impl Cursor {
    fn parse(raw: Option<&str>) -> Result<Cursor, AroFloError> {
        let Some(raw) = raw else {
            return Ok(Cursor {
                since: EPOCH_START.to_owned(),
                page: 1,
            });
        };
        let (since, page) = raw.split_once('#').unwrap_or((raw, "1"));
        let page = page
            .parse()
            .map_err(|_| AroFloError::Input(format!("`{raw}` is not an aroflo cursor")))?;
        if parse_datetime(since).is_none() {
            return Err(AroFloError::Input(format!("`{raw}` is not an aroflo cursor")));
        }
        Ok(Cursor {
            since: since.to_owned(),
            page,
        })
    }

    fn render(&self) -> String {
        if self.page <= 1 {
            self.since.clone()
        } else {
            format!("{}#{}", self.since, self.page)
        }
    }

    /// After reading rows up to `last`: AroFlo compares with `>` at second precision, so the
    /// next read starts one second before `last` (records of that second come again and are
    /// absorbed downstream) rather than risk missing a record written in the same second.
    /// A full page made only of one second's rows moves to the next page instead.
    fn after(&self, last: Option<i64>, full: bool) -> Cursor {
        let since_ms = parse_datetime(&self.since).unwrap_or(0);
        match last.map(|ms| ms - ms.rem_euclid(1000) - 1000) {
            Some(start) if start > since_ms => Cursor {
                since: where_datetime(start),
                page: 1,
            },
            _ if full => Cursor {
                since: self.since.clone(),
                page: self.page + 1,
            },
            _ => Cursor {
                since: self.since.clone(),
                page: 1,
            },
        }
    }
}

fn required_text(input: &Fields, key: &str) -> Option<String> {
    config_text(input, key)
}

/// AroFlo's task status names on update (reference §2.8), from any of the spellings it reads back.
fn task_status(value: &str) -> Result<&'static str, AroFloError> {
    let key: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    Ok(match key.as_str() {
        "notstarted" | "open" | "new" => "Not Started",
        "inprogress" => "In Progress",
        "pending" => "Pending",
        "completed" | "complete" | "done" => "Completed",
        "archived" => "Archived",
        _ => return Err(AroFloError::Input(format!("`{value}` is not an AroFlo task status"))),
    })
}

impl Aroflo {
    pub fn new(host: Host, config: &Fields) -> Self {
        Aroflo {
            host,
            settings: Settings::from_fields(config).map_err(|e| e.to_string()),
        }
    }

    fn settings(&self) -> Result<&Settings, AroFloError> {
        self.settings.as_ref().map_err(|e| AroFloError::Config(e.clone()))
    }

    fn send(&self, method: HttpMethod, var_string: String) -> Result<Value, AroFloError> {
        let settings = self.settings()?;
        let timestamp = header_timestamp(self.host.now_ms());
        let credentials = &settings.credentials;
        let signature = credentials.signature(method.as_str(), &timestamp, &var_string);
        let mut request = match method {
            HttpMethod::Get => HttpRequest::new(method, format!("{}?{var_string}", settings.base_url)),
            _ => HttpRequest::new(method, settings.base_url.clone())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(var_string.clone()),
        };
        for (name, value) in credentials.headers(method.as_str(), &timestamp, &var_string) {
            request = request.header(name, value);
        }
        request.secrets = vec![signature, credentials.secret_key.clone()];
        let response = self.host.http(request)?;
        envelope::parse(&response)
    }

    pub fn get(&self, query: &Query) -> Result<Value, AroFloError> {
        self.send(HttpMethod::Get, query.encode())
    }

    /// POSTs `postxml` to `zone` and returns its `postresults`, errors typed.
    pub fn post(&self, zone: &str, xml: &str) -> Result<Value, AroFloError> {
        let body = format!("zone={}&postxml={}", encode_component(zone), encode_component(xml));
        let response = self.send(HttpMethod::Post, body)?;
        envelope::post_results(zone, &response)
    }

    fn rows(zone_response: &Value, key: &str) -> Vec<Value> {
        list(member(zone_response, key))
    }

    /// Records of `feed` whose ids are given, each stamped with its lastupdate time.
    fn fetch(&self, feed: Feed, updated: &[(String, i64)]) -> Result<Vec<Record>, AroFloError> {
        let times: HashMap<&str, i64> = updated.iter().map(|(id, ms)| (id.as_str(), *ms)).collect();
        let mut out = Vec::new();
        for chunk in updated.chunks(IDS_PER_FETCH) {
            let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
            let mut query = Query::zone(feed.zone()).and_in(feed.id_field(), &ids);
            if let Some(join) = feed.join() {
                query = query.join(join);
            }
            let response = self.get(&query.page(1, MAX_PAGE))?;
            for item in Self::rows(&response, feed.zone()) {
                let at = text_of(&item, feed.id_field()).and_then(|id| times.get(id.as_str()).copied());
                out.extend(feed.records(&item, at));
            }
        }
        Ok(out)
    }

    /// Poll: the `lastupdate` zone (not counted against the daily limit) names what changed;
    /// the changed records are then fetched by id.
    fn read_feed(&self, feed: Feed, cursor: Option<&str>, limit: u32) -> Result<Page, AroFloError> {
        let position = Cursor::parse(cursor)?;
        let query = Query::zone("lastupdate")
            .and_where("zonename", "=", feed.zone())
            .and_where("lastupdateutc", ">", &position.since)
            .order("lastupdateutc", true)
            .page(position.page, limit);
        let response = self.get(&query)?;
        let rows = Self::rows(&response, "lastupdate");
        let full = rows.len() as u32 >= limit;
        let mut changed: Vec<(String, i64)> = Vec::new();
        let mut last = None;
        for row in &rows {
            let at = text_of(row, "lastupdateutc").and_then(|t| parse_datetime(&t));
            last = at.or(last);
            if let Some(id) = text_of(row, "zoneid") {
                changed.retain(|(seen, _)| seen != &id);
                changed.push((id, at.unwrap_or(0)));
            }
        }
        let records = self.fetch(feed, &changed)?;
        Ok(Page {
            records,
            next: Some(position.after(last, full).render()),
            has_more: full,
        })
    }

    /// Client notes have no lastupdate rows: their feed is their creation time.
    fn read_client_notes(&self, cursor: Option<&str>, limit: u32) -> Result<Page, AroFloError> {
        let position = Cursor::parse(cursor)?;
        let query = Query::zone("clientnotes")
            .and_where("createdutc", ">", &position.since)
            .order("dateposted", true)
            .page(position.page, limit);
        let rows = Self::rows(&self.get(&query)?, "clientnotes");
        let full = rows.len() as u32 >= limit;
        let records: Vec<Record> = rows.iter().filter_map(records::client_note).collect();
        let last = records
            .iter()
            .filter_map(|r| r.updated_at.as_deref().and_then(parse_datetime))
            .max();
        Ok(Page {
            records,
            next: Some(position.after(last, full).render()),
            has_more: full,
        })
    }

    /// Backfill: the zone itself, filtered to `[since, until)` on its own date field.
    fn read_window(
        &self,
        stream: &str,
        since: &str,
        until: &str,
        page: Option<&str>,
        limit: u32,
    ) -> Result<Page, AroFloError> {
        let bound = |value: &str| {
            parse_datetime(value).ok_or_else(|| AroFloError::Input(format!("`{value}` is not an RFC 3339 time")))
        };
        // `>` is exclusive: one second earlier keeps `since` itself in the window.
        let (from, to) = (where_datetime(bound(since)? - 1000), where_datetime(bound(until)?));
        let page_number: u32 = match page {
            Some(p) => p
                .parse()
                .map_err(|_| AroFloError::Input(format!("`{p}` is not an aroflo page")))?,
            None => 1,
        };
        let (zone, field) = match (stream, Feed::of(stream)) {
            ("contacts", _) => ("contacts", "createddatetimeutc"),
            (_, Some(feed)) => (feed.zone(), feed.updated_field()),
            ("clientnotes", None) => ("clientnotes", "createdutc"),
            (other, None) => return Err(AroFloError::Input(format!("unknown stream `{other}`"))),
        };
        let mut query = Query::zone(zone)
            .and_where(field, ">", &from)
            .and_where(field, "<", &to);
        if zone == "tasks" {
            query = query.join("notes");
        }
        let rows = Self::rows(&self.get(&query.page(page_number, limit))?, zone);
        let full = rows.len() as u32 >= limit;
        let records = rows
            .iter()
            .flat_map(|row| match (stream, Feed::of(stream)) {
                ("contacts", _) => records::contact(row, None, None).into_iter().collect(),
                ("clientnotes", _) => records::client_note(row).into_iter().collect(),
                (_, Some(feed)) => feed.records(row, None),
                _ => Vec::new(),
            })
            .collect();
        Ok(Page {
            records,
            next: full.then(|| (page_number + 1).to_string()),
            has_more: full,
        })
    }

    fn read_inner(&self, request: &ReadRequest) -> Result<Page, AroFloError> {
        self.settings()?;
        let limit = request.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
        match (&request.position, Feed::of(&request.stream)) {
            (ReadPosition::Window { since, until, page }, _) => {
                self.read_window(&request.stream, since, until, page.as_deref(), limit)
            }
            (ReadPosition::Cursor { cursor }, Some(feed)) => self.read_feed(feed, cursor.as_deref(), limit),
            (ReadPosition::Cursor { cursor }, None) if request.stream == "clientnotes" => {
                self.read_client_notes(cursor.as_deref(), limit)
            }
            (_, None) => Err(AroFloError::Input(format!("unknown stream `{}`", request.stream))),
        }
    }

    fn first_result(results: &Value, section: &str, zone: &str) -> Option<Value> {
        list(member(results, section).and_then(|s| member(s, zone)))
            .into_iter()
            .next()
    }

    fn written(results: &Value, zone: &str, id_field: &str, known: Option<&str>) -> Result<WriteResult, AroFloError> {
        let record =
            Self::first_result(results, "inserts", zone).or_else(|| Self::first_result(results, "updates", zone));
        let target_id = record
            .as_ref()
            .and_then(|r| text_of(r, id_field))
            .or_else(|| known.map(str::to_owned))
            .ok_or_else(|| AroFloError::Malformed(format!("the {zone} write returned no {id_field}")))?;
        let returned = match record {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        Ok(WriteResult {
            target_id: Some(target_id),
            returned,
        })
    }

    fn client_xml(input: &Fields, client_id: Option<&str>) -> Result<String, AroFloError> {
        let mut xml = Xml::default();
        xml.open("clients").open("client");
        if let Some(id) = client_id {
            xml.text("clientid", id);
        }
        let first = required_text(input, "firstname");
        let surname = required_text(input, "surname");
        let name = required_text(input, "clientname").or_else(|| {
            let joined = [first.clone(), surname.clone()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            (!joined.is_empty()).then_some(joined)
        });
        if client_id.is_none() {
            // Insert needs all three (reference §2.8); a person's name fills the company's.
            let (Some(name), Some(first), Some(surname)) = (&name, &first, &surname) else {
                return Err(AroFloError::Input(
                    "a new AroFlo client needs clientname (or firstname and surname), firstname and surname".into(),
                ));
            };
            xml.text("clientname", name)
                .text("firstname", first)
                .text("surname", surname);
        } else {
            for (key, value) in [("clientname", &name), ("firstname", &first), ("surname", &surname)] {
                if let Some(value) = value {
                    xml.text(key, value);
                }
            }
        }
        for key in ["abn", "phone", "mobile", "email", "website"] {
            if let Some(value) = required_text(input, key) {
                xml.text(key, &value);
            }
        }
        Ok(xml.close("client").close("clients").finish())
    }

    fn task_insert_xml(&self, input: &Fields, client_id: &str) -> Result<String, AroFloError> {
        let settings = self.settings()?;
        let taskname = required_text(input, "taskname")
            .ok_or_else(|| AroFloError::Input("a new AroFlo task needs a taskname".into()))?;
        let org = required_text(input, "orgid")
            .or_else(|| settings.default_org_id.clone())
            .ok_or_else(|| AroFloError::Input("a new AroFlo task needs orgid (or default_org_id in config)".into()))?;
        let task_type = required_text(input, "tasktypeid")
            .or_else(|| settings.default_task_type_id.clone())
            .ok_or_else(|| {
                AroFloError::Input("a new AroFlo task needs tasktypeid (or default_task_type_id in config)".into())
            })?;
        let due = match required_text(input, "duedate") {
            Some(date) => date_only(&date)?,
            None => where_datetime(self.host.now_ms())[..10].to_owned(),
        };
        let mut xml = Xml::default();
        xml.open("tasks").open("task");
        xml.nested("client", "clientid", client_id)
            .text("taskname", &truncate(&taskname, 50))
            .text("duedate", &due)
            .nested("org", "orgid", &org)
            .nested("tasktype", "tasktypeid", &task_type);
        for key in ["description", "contactname", "contactphone", "custon"] {
            if let Some(value) = required_text(input, key) {
                xml.text(key, &value);
            }
        }
        Ok(xml.close("task").close("tasks").finish())
    }

    /// Only the fields AroFlo updates on a task (description and duedate are insert-only).
    fn task_update_xml(input: &Fields, task_id: &str, status: Option<&str>) -> Result<String, AroFloError> {
        let mut xml = Xml::default();
        xml.open("tasks").open("task").text("taskid", task_id);
        if let Some(name) = required_text(input, "taskname") {
            xml.text("taskname", &truncate(&name, 50));
        }
        let status = match status {
            Some(fixed) => Some(fixed),
            None => required_text(input, "status").map(|s| task_status(&s)).transpose()?,
        };
        if let Some(status) = status {
            xml.text("status", status);
        }
        if let Some(id) = required_text(input, "substatusid") {
            xml.nested("substatus", "substatusid", &id);
        }
        if let Some(custon) = required_text(input, "custon") {
            xml.text("custon", &custon);
        }
        Ok(xml.close("task").close("tasks").finish())
    }

    fn note_create(&self, request: &WriteRequest) -> Result<WriteResult, AroFloError> {
        let settings = self.settings()?;
        let input = &request.input;
        let content =
            required_text(input, "content").ok_or_else(|| AroFloError::Input("a note needs content".into()))?;
        let filter = required_text(input, "filter").unwrap_or_else(|| settings.note_filter.clone());
        // A linked note (target id) is updated in place rather than posted again.
        let existing = request.target_id.as_deref();
        if let Some(task_id) = required_text(input, "taskid") {
            let mut xml = Xml::default();
            xml.open("tasks")
                .open("task")
                .text("taskid", &task_id)
                .open("notes")
                .open("note");
            if let Some(id) = existing {
                xml.text("noteid", id);
            }
            let xml = xml
                .text("content", &content)
                .text("filter", &filter)
                .text("sticky", "false")
                .close("note")
                .close("notes")
                .close("task")
                .close("tasks")
                .finish();
            let results = self.post("tasks", &xml)?;
            let task = Self::first_result(&results, "updates", "tasks")
                .ok_or_else(|| AroFloError::Malformed("the task note write returned no task".into()))?;
            let note = list(member(&task, "notes")).into_iter().last().unwrap_or(Value::Null);
            let note_id = text_of(&note, "noteid")
                .ok_or_else(|| AroFloError::Malformed("the task note write returned no noteid".into()))?;
            let returned = match note {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            return Ok(WriteResult {
                target_id: Some(note_id),
                returned,
            });
        }
        let client_id = required_text(input, "clientid")
            .or_else(|| request.parent_id.clone())
            .ok_or_else(|| AroFloError::Input("a note needs a taskid or a clientid".into()))?;
        let mut xml = Xml::default();
        xml.open("clientnotes").open("clientnote");
        if let Some(id) = existing {
            xml.text("noteid", id);
        }
        let xml = xml
            .text("clientid", &client_id)
            .text("content", &content)
            .text("filter", &filter)
            .text("sticky", "0")
            .close("clientnote")
            .close("clientnotes")
            .finish();
        let results = self.post("clientnotes", &xml)?;
        Self::written(&results, "clientnotes", "noteid", existing)
    }

    fn write_inner(&self, request: &WriteRequest) -> Result<WriteResult, AroFloError> {
        self.settings()?;
        let target = || {
            request
                .target_id
                .as_deref()
                .ok_or_else(|| AroFloError::Input(format!("{} needs the target id", request.action)))
        };
        let input = &request.input;
        match request.action.as_str() {
            // With a link the engine passes the target id: a create becomes an update, so a
            // repeated delivery never duplicates the record.
            "client.create" | "client.update" => match request.target_id.as_deref() {
                None if request.action == "client.create" => {
                    let results = self.post("clients", &Self::client_xml(input, None)?)?;
                    Self::written(&results, "clients", "clientid", None)
                }
                _ => {
                    let id = target()?;
                    let results = self.post("clients", &Self::client_xml(input, Some(id))?)?;
                    Self::written(&results, "clients", "clientid", Some(id))
                }
            },
            "task.create" if request.target_id.is_none() => self.task_create(request),
            "task.create" | "task.update" => {
                let id = target()?;
                let status = completed_flag(input).map(|done| if done { "Completed" } else { "In Progress" });
                let results = self.post("tasks", &Self::task_update_xml(input, id, status)?)?;
                Self::written(&results, "tasks", "taskid", Some(id)).map(task_in_input_terms)
            }
            "task.complete" => {
                let id = target()?;
                let status = if completed_flag(input) == Some(false) {
                    "In Progress"
                } else {
                    "Completed"
                };
                let results = self.post("tasks", &Self::task_update_xml(&Fields::new(), id, Some(status))?)?;
                Self::written(&results, "tasks", "taskid", Some(id)).map(task_in_input_terms)
            }
            "note.create" => self.note_create(request),
            other => Err(AroFloError::Input(format!("unknown action `{other}`"))),
        }
    }

    /// Inserts a task; a status other than "not started" (AroFlo takes none on insert) follows
    /// as an update. If that second call fails the task still exists: the write reports its id
    /// with the status it has ("Not Started") in `returned`, so the engine sees the field kept
    /// otherwise rather than a failure whose retry would insert the task twice.
    fn task_create(&self, request: &WriteRequest) -> Result<WriteResult, AroFloError> {
        let input = &request.input;
        let client_id = request
            .parent_id
            .clone()
            .or_else(|| required_text(input, "clientid"))
            .ok_or_else(|| AroFloError::Input("task.create needs the client (parent id or clientid)".into()))?;
        let status = match completed_flag(input) {
            Some(true) => Some("Completed"),
            _ => required_text(input, "status")
                .map(|s| task_status(&s))
                .transpose()?
                .filter(|s| *s != "Not Started"),
        };
        let results = self.post("tasks", &self.task_insert_xml(input, &client_id)?)?;
        let mut written = Self::written(&results, "tasks", "taskid", None)?;
        // AroFlo inserts every task "Not Started" and echoes no status.
        written
            .returned
            .entry("status")
            .or_insert_with(|| Value::String("Not Started".into()));
        if let (Some(status), Some(id)) = (status, written.target_id.clone()) {
            match Self::task_update_xml(&Fields::new(), &id, Some(status)).and_then(|xml| self.post("tasks", &xml)) {
                Ok(_) => {
                    written
                        .returned
                        .insert("status".into(), Value::String(status.to_owned()));
                }
                Err(error) => self.host.log(
                    tether_abi::LogLevel::Warn,
                    &format!("task {id} was created but its status could not be set: {error}"),
                    &Fields::new(),
                ),
            }
        }
        Ok(task_in_input_terms(written))
    }

    fn check_inner(&self) -> Result<CheckReport, AroFloError> {
        self.settings()?;
        let query = Query::zone("users").and_where("archived", "=", "false").page(1, 1);
        let users = Self::rows(&self.get(&query)?, "users");
        let org = users
            .first()
            .and_then(|u| member(u, "org"))
            .and_then(|o| text_of(o, "orgname"));
        Ok(CheckReport {
            account: Some(org.map_or_else(|| "AroFlo".to_owned(), |o| format!("AroFlo org {o}"))),
            notes: Vec::new(),
        })
    }
}

/// A task write's echo in the terms of the input it was written from, for the engine's write
/// verification: `completed` from the status it set, `duedate` as a date (AroFlo echoes
/// `YYYY/MM/DD`).
fn task_in_input_terms(mut written: WriteResult) -> WriteResult {
    let returned = &mut written.returned;
    if let Some(status) = returned.get("status").and_then(Value::as_str) {
        let done = status.eq_ignore_ascii_case("completed");
        returned.insert("completed".into(), Value::Bool(done));
    }
    if let Some(Value::String(due)) = returned.get_mut("duedate") {
        *due = due.replace('/', "-");
    }
    written
}

/// `completed` as a bool (GHL's task field), when the input has one.
fn completed_flag(input: &Fields) -> Option<bool> {
    match input.get("completed")? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// `duedate` as AroFlo takes it (`YYYY/MM/DD`), from RFC 3339 or either slash/dash form.
fn date_only(value: &str) -> Result<String, AroFloError> {
    let ms = parse_datetime(value).ok_or_else(|| AroFloError::Input(format!("`{value}` is not a date")))?;
    Ok(where_datetime(ms)[..10].to_owned())
}

fn truncate(value: &str, chars: usize) -> String {
    value.chars().take(chars).collect()
}

impl Connector for Aroflo {
    fn check(&self) -> Result<CheckReport, ConnectorError> {
        self.check_inner().map_err(ConnectorError::from)
    }

    fn read(&self, request: ReadRequest) -> Result<Page, ConnectorError> {
        self.read_inner(&request).map_err(ConnectorError::from)
    }

    fn write(&self, request: WriteRequest) -> Result<WriteResult, ConnectorError> {
        self.write_inner(&request).map_err(ConnectorError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_step_back_one_second_or_page_on() {
        let start = Cursor::parse(None).expect("start");
        assert_eq!(start.since, EPOCH_START);
        let later = parse_datetime("2026/11/23 10:00:05").expect("date") + 300;
        let next = start.after(Some(later), true);
        assert_eq!(next.render(), "2026/11/23 10:00:04");
        // A full page all from that one second: same since, next page.
        let paged = next.after(Some(later), true);
        assert_eq!(paged.render(), "2026/11/23 10:00:04#2");
        assert_eq!(Cursor::parse(Some("2026/11/23 10:00:04#2")).expect("parse"), paged);
        // Nothing new keeps the position.
        assert_eq!(paged.after(None, false).render(), "2026/11/23 10:00:04");
        assert!(Cursor::parse(Some("yesterday")).is_err());
    }

    #[test]
    fn task_statuses_take_any_spelling() {
        assert_eq!(task_status("notstarted").expect("s"), "Not Started");
        assert_eq!(task_status("In Progress").expect("s"), "In Progress");
        assert_eq!(task_status("completed").expect("s"), "Completed");
        assert!(task_status("exploded").is_err());
    }

    struct Offline;

    impl tether_abi::HostServices for Offline {
        fn http(&self, _: HttpRequest) -> Result<tether_abi::HttpResponse, ConnectorError> {
            Err(ConnectorError::transient("offline"))
        }
        fn log(&self, _: tether_abi::LogLevel, _: &str, _: &Fields) {}
        fn now_ms(&self) -> i64 {
            0
        }
        fn secret_get(&self, _: &str) -> Result<Option<String>, ConnectorError> {
            Ok(None)
        }
        fn secret_put(&self, _: &str, _: &str) -> Result<(), ConnectorError> {
            Ok(())
        }
    }

    #[test]
    fn an_unconfigured_instance_opens_and_every_call_names_the_problem() {
        // The loader and `tether plugins` open instances without config to describe them.
        let unconfigured = Aroflo::new(std::sync::Arc::new(Offline), &Fields::new());
        let error = unconfigured.check().expect_err("no config");
        assert_eq!(error.kind, tether_abi::ErrorKind::Fatal);
        assert!(
            error.message.starts_with("the aroflo plugin config is not usable"),
            "{error}"
        );
        let read = unconfigured.read(ReadRequest {
            stream: "clients".into(),
            position: ReadPosition::Cursor { cursor: None },
            limit: None,
            parent_id: None,
        });
        assert!(read.expect_err("no config").message.contains("`uencoded` is missing"));
    }

    #[test]
    fn config_errors_name_the_missing_key() {
        let error = Settings::from_fields(&Fields::new()).expect_err("empty");
        assert!(error.to_string().contains("`uencoded` is missing"), "{error}");
    }
}
