//! `POST zone=…&postxml=…`: inserts (no id element) and updates (with one), per record, with
//! errors reported in `postresults.errors` and on the record under `status "0"` (reference §2.4).

use super::model::{filter_code, Client, ClientNote, Contact, Store, Task, TaskNote, NOTE_FILTERS, TASK_STATUSES};
use super::query::parse_date;
use super::xml::Element;
use crate::ids::IdGen;
use serde_json::{json, Map, Value};

/// What one POST produced, rendered as `postresults`.
#[derive(Debug, Default)]
pub struct Results {
    zone: String,
    inserts: Vec<Value>,
    updates: Vec<Value>,
    errors: Vec<Value>,
}

impl Results {
    pub fn render(self) -> Value {
        let zone = self.zone;
        json!({"postresults": {
            // AroFlo mixes numbers and strings here; so does the emulator.
            "inserttotal": self.inserts.iter().filter(|r| r.get("error").is_none()).count(),
            "updatetotal": self.updates.iter().filter(|r| r.get("error").is_none()).count().to_string(),
            "inserts": {zone.clone(): self.inserts},
            "updates": {zone: self.updates},
            "errors": self.errors,
        }})
    }

    fn fail(&mut self, insert: bool, mut echo: Value, code: &str, message: &str, detail: &str) {
        self.errors
            .push(json!({"message": message, "code": code, "detail": detail, "type": "Validation"}));
        echo["error"] = Value::String(detail.to_owned());
        if insert {
            self.inserts.push(echo);
        } else {
            self.updates.push(echo);
        }
    }
}

/// Ids look like AroFlo's: base64 of a few random bytes (`JCdKUydRMCAgCg==`).
pub fn new_id(ids: &IdGen) -> String {
    use base64::Engine;
    let bytes = ids.bytes32();
    base64::engine::general_purpose::STANDARD.encode(&bytes[..10])
}

/// Writes that came with the request.
pub struct Post<'a> {
    pub store: &'a mut Store,
    pub ids: &'a IdGen,
    pub now_ms: i64,
    /// The API user, who authors notes.
    pub user_id: String,
}

fn echo(element: &Element) -> Value {
    let mut map = Map::new();
    for child in &element.children {
        if child.children.is_empty() {
            map.insert(child.name.clone(), Value::String(child.text.trim().to_owned()));
        }
    }
    Value::Object(map)
}

fn too_long(value: &str, max: usize) -> bool {
    value.chars().count() > max
}

/// `Not Started` / `notstarted` → `notstarted`.
fn status_key(value: &str) -> Option<&'static str> {
    let key: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    TASK_STATUSES.iter().find(|(k, _)| *k == key).map(|(k, _)| *k)
}

fn valid_filter(value: &str) -> Option<String> {
    NOTE_FILTERS
        .iter()
        .find(|f| f.eq_ignore_ascii_case(value.trim()))
        .map(|f| f.to_string())
}

fn truthy(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")
}

impl Post<'_> {
    pub fn apply(&mut self, zone: &str, root: &Element) -> Results {
        // The documented root is the plural zone element; `<imsapi>`/`<aroflo>` wrappers seen in
        // some clients are tolerated.
        let root = match root.name.as_str() {
            "imsapi" | "aroflo" => root.child(zone).unwrap_or(root),
            _ => root,
        };
        let mut results = Results {
            zone: zone.to_owned(),
            ..Results::default()
        };
        if root.name != zone {
            results.errors.push(json!({"message": "Invalid XML", "code": "100",
                "detail": format!("expected <{zone}> as the root, found <{}>", root.name), "type": "Validation"}));
            return results;
        }
        match zone {
            "clients" => root.children_named("client").for_each(|e| self.client(e, &mut results)),
            "tasks" => root.children_named("task").for_each(|e| self.task(e, &mut results)),
            "clientnotes" => root
                .children_named("clientnote")
                .for_each(|e| self.client_note(e, &mut results)),
            other => results
                .errors
                .push(json!({"message": "Unable to make changes to Database", "code": "105",
                "detail": format!("the {other} zone cannot be written"), "type": "Database"})),
        }
        results
    }

    fn client(&mut self, e: &Element, results: &mut Results) {
        let mut out = echo(e);
        let now = self.now_ms;
        let name = e.text_of("clientname");
        for (field, max) in [
            ("clientname", 50),
            ("firstname", 50),
            ("surname", 50),
            ("shortname", 6),
            ("email", 250),
            ("website", 1000),
        ] {
            if e.text_of(field).is_some_and(|v| too_long(&v, max)) {
                let insert = e.text_of("clientid").is_none();
                return results.fail(
                    insert,
                    out,
                    "100",
                    "Validation failed",
                    &format!("{field} is longer than {max} characters"),
                );
            }
        }
        let id = e.text_of("clientid").filter(|id| !id.is_empty());
        if let Some(name) = &name {
            let clash = self
                .store
                .clients
                .iter()
                .any(|c| c.clientname.eq_ignore_ascii_case(name) && Some(&c.clientid) != id.as_ref());
            if clash {
                return results.fail(
                    id.is_none(),
                    out,
                    "209",
                    "Unable to make changes to Database",
                    "Client already exists in AroFlo. Please use another name.",
                );
            }
        }
        let index = match &id {
            None => {
                let (Some(name), Some(first), Some(surname)) = (name, e.text_of("firstname"), e.text_of("surname"))
                else {
                    return results.fail(
                        true,
                        out,
                        "100",
                        "Validation failed",
                        "clientname, firstname and surname are required",
                    );
                };
                if name.is_empty() || first.is_empty() || surname.is_empty() {
                    return results.fail(
                        true,
                        out,
                        "100",
                        "Validation failed",
                        "clientname, firstname and surname are required",
                    );
                }
                let org = e
                    .nested_text("orgs", "org")
                    .filter(|o| !o.is_empty())
                    .or_else(|| self.store.orgs.first().map(|o| o.id.clone()))
                    .unwrap_or_default();
                self.store.clients.push(Client {
                    clientid: new_id(self.ids),
                    clientname: name,
                    firstname: first,
                    surname,
                    shortname: String::new(),
                    abn: String::new(),
                    phone: String::new(),
                    mobile: String::new(),
                    email: String::new(),
                    website: String::new(),
                    address: Default::default(),
                    archived: false,
                    postable: false,
                    externalid: String::new(),
                    org_id: org,
                    created_ms: now,
                    updated_ms: now,
                    contacts: Vec::new(),
                });
                self.store.clients.len() - 1
            }
            Some(id) => match self.store.clients.iter().position(|c| &c.clientid == id) {
                Some(index) => index,
                None => return results.fail(false, out, "404", "Record not found", "No client with that clientid"),
            },
        };
        let mut contacts_out = Vec::new();
        let ids = self.ids;
        let client = &mut self.store.clients[index];
        let set = |target: &mut String, key: &str| {
            if let Some(v) = e.text_of(key) {
                *target = v;
            }
        };
        set(&mut client.clientname, "clientname");
        set(&mut client.firstname, "firstname");
        set(&mut client.surname, "surname");
        set(&mut client.shortname, "shortname");
        set(&mut client.abn, "abn");
        set(&mut client.phone, "phone");
        set(&mut client.mobile, "mobile");
        set(&mut client.email, "email");
        set(&mut client.website, "website");
        if let Some(address) = e.child("address") {
            let a = &mut client.address;
            for (target, key) in [
                (&mut a.addressline1, "addressline1"),
                (&mut a.addressline2, "addressline2"),
                (&mut a.suburb, "suburb"),
                (&mut a.state, "state"),
                (&mut a.postcode, "postcode"),
                (&mut a.country, "country"),
            ] {
                if let Some(v) = address.text_of(key) {
                    *target = v;
                }
            }
        }
        if id.is_some() {
            // Update-only fields (reference §2.8).
            if let Some(v) = e.text_of("postable") {
                client.postable = truthy(&v);
            }
            if let Some(v) = e.nested_text("link", "externalid") {
                client.externalid = v;
            }
            if let Some(v) = e.text_of("archived") {
                client.archived = truthy(&v);
            }
        }
        if let Some(contacts) = e.child("contacts") {
            for c in contacts.children_named("contact") {
                let existing = c
                    .text_of("userid")
                    .and_then(|u| client.contacts.iter().position(|x| x.userid == u));
                let at = match existing {
                    Some(at) => at,
                    None => {
                        client.contacts.push(Contact {
                            userid: new_id(ids),
                            givennames: String::new(),
                            surname: String::new(),
                            phone: String::new(),
                            mobile: String::new(),
                            email: String::new(),
                            archived: false,
                            created_ms: now,
                        });
                        client.contacts.len() - 1
                    }
                };
                let contact = &mut client.contacts[at];
                for (target, key) in [
                    (&mut contact.givennames, "givennames"),
                    (&mut contact.surname, "surname"),
                    (&mut contact.phone, "phone"),
                    (&mut contact.mobile, "mobile"),
                    (&mut contact.email, "email"),
                ] {
                    if let Some(v) = c.text_of(key) {
                        *target = v;
                    }
                }
                if let Some(v) = c.text_of("archived") {
                    contact.archived = truthy(&v);
                }
                let mut echoed = echo(c);
                echoed["userid"] = Value::String(contact.userid.clone());
                contacts_out.push(echoed);
            }
        }
        client.updated_ms = now;
        let client_id = client.clientid.clone();
        self.store.touch("clients", &client_id, now);
        out["clientid"] = Value::String(client_id);
        if !contacts_out.is_empty() {
            out["contacts"] = Value::Array(contacts_out);
        }
        if id.is_none() {
            results.inserts.push(out);
        } else {
            results.updates.push(out);
        }
    }

    fn note(&mut self, n: &Element, notes: &mut Vec<TaskNote>) -> Result<Value, String> {
        let content = n.text_of("content").or_else(|| n.text_of("note"));
        if let Some(id) = n.text_of("noteid").filter(|i| !i.is_empty()) {
            let note = notes
                .iter_mut()
                .find(|x| x.noteid == id)
                .ok_or("No note with that noteid")?;
            if let Some(content) = content {
                note.content = content;
            }
            return Ok(json!({"NOTEID": note.noteid, "content": note.content}));
        }
        let content = content.filter(|c| !c.is_empty()).ok_or("a note needs content")?;
        let filter = match n.text_of("filter") {
            Some(f) => valid_filter(&f).ok_or_else(|| format!("`{f}` is not a note filter"))?,
            None => "Internal Only".to_owned(),
        };
        let sticky = n.text_of("sticky").is_some_and(|s| truthy(&s));
        let note = TaskNote {
            noteid: new_id(self.ids),
            content,
            filter,
            sticky,
            user_id: self.user_id.clone(),
            posted_ms: self.now_ms,
        };
        let out = json!({"NOTEID": note.noteid, "content": note.content,
            "filter": filter_code(&note.filter), "sticky": if sticky { "1" } else { "0" }});
        notes.push(note);
        Ok(out)
    }

    fn task(&mut self, e: &Element, results: &mut Results) {
        let out = echo(e);
        let now = self.now_ms;
        if e.text_of("taskname").is_some_and(|v| too_long(&v, 50)) {
            let insert = e.text_of("taskid").is_none();
            return results.fail(
                insert,
                out,
                "100",
                "Validation failed",
                "taskname is longer than 50 characters",
            );
        }
        match e.text_of("taskid").filter(|i| !i.is_empty()) {
            None => self.task_insert(e, out, results),
            Some(id) => {
                let Some(index) = self.store.tasks.iter().position(|t| t.taskid == id) else {
                    return results.fail(false, out, "404", "Record not found", "No task with that taskid");
                };
                let status = match e.text_of("status") {
                    Some(s) => match status_key(&s) {
                        Some(k) => Some(k),
                        None => {
                            return results.fail(
                                false,
                                out,
                                "100",
                                "Validation failed",
                                &format!("`{s}` is not a task status"),
                            )
                        }
                    },
                    None => None,
                };
                let substatus = e.nested_text("substatus", "substatusid");
                if let Some(s) = &substatus {
                    if !s.is_empty() && !self.store.substatuses.iter().any(|x| &x.id == s) {
                        return results.fail(
                            false,
                            out,
                            "100",
                            "Validation failed",
                            "No substatus with that substatusid",
                        );
                    }
                }
                let mut notes = std::mem::take(&mut self.store.tasks[index].notes);
                let mut notes_out = Vec::new();
                let mut note_error = None;
                if let Some(list) = e.child("notes") {
                    for n in list.children_named("note") {
                        match self.note(n, &mut notes) {
                            Ok(v) => notes_out.push(v),
                            Err(m) => note_error = Some(m),
                        }
                    }
                }
                let task = &mut self.store.tasks[index];
                task.notes = notes;
                if let Some(m) = note_error {
                    return results.fail(false, out, "100", "Validation failed", &m);
                }
                // description and duedate are not updatable: AroFlo ignores them.
                if let Some(v) = e.text_of("taskname") {
                    task.taskname = v;
                }
                if let Some(k) = status {
                    task.status = k.to_owned();
                    task.completed_ms = (k == "completed").then_some(now);
                }
                if let Some(s) = substatus {
                    task.substatus_id = s;
                }
                if let Some(v) = e.text_of("custon") {
                    task.custon = v;
                }
                if let Some(v) = e.text_of("linkprocessed") {
                    task.linkprocessed = truthy(&v);
                }
                task.updated_ms = now;
                let echo = json!({"TASKID": task.taskid, "taskname": task.taskname, "status": task.status, "notes": notes_out});
                let task_id = task.taskid.clone();
                self.store.touch("tasks", &task_id, now);
                results.updates.push(echo);
            }
        }
    }

    fn task_insert(&mut self, e: &Element, out: Value, results: &mut Results) {
        let now = self.now_ms;
        let client = e.nested_text("client", "clientid").unwrap_or_default();
        let org = e.nested_text("org", "orgid").unwrap_or_default();
        let tasktype = e.nested_text("tasktype", "tasktypeid").unwrap_or_default();
        let taskname = e.text_of("taskname").unwrap_or_default();
        let due = e.text_of("duedate").and_then(|d| parse_date(&d));
        let problem = if self.store.client(&client).is_none() {
            Some("client/clientid is missing or unknown")
        } else if taskname.is_empty() {
            Some("taskname is required")
        } else if due.is_none() {
            Some("duedate is missing or not a date")
        } else if !self.store.orgs.iter().any(|o| o.id == org) {
            Some("org/orgid is missing or unknown")
        } else if !self.store.task_types.iter().any(|t| t.id == tasktype) {
            Some("tasktype/tasktypeid is missing or unknown")
        } else {
            None
        };
        if let Some(problem) = problem {
            return results.fail(true, out, "100", "Validation failed", problem);
        }
        let mut notes = Vec::new();
        if let Some(list) = e.child("notes") {
            for n in list.children_named("note") {
                if let Err(m) = self.note(n, &mut notes) {
                    return results.fail(true, out, "100", "Validation failed", &m);
                }
            }
        }
        self.store.next_jobnumber += 1;
        let task = Task {
            taskid: new_id(self.ids),
            jobnumber: self.store.next_jobnumber,
            client_id: client,
            taskname,
            description: e.text_of("description").unwrap_or_default(),
            status: "notstarted".into(),
            substatus_id: String::new(),
            org_id: org,
            tasktype_id: tasktype,
            contactname: e.text_of("contactname").unwrap_or_default(),
            contactphone: e.text_of("contactphone").unwrap_or_default(),
            custon: e.text_of("custon").unwrap_or_default(),
            linkprocessed: false,
            duedate_ms: due.unwrap_or(now),
            requested_ms: now,
            completed_ms: None,
            created_ms: now,
            updated_ms: now,
            notes,
        };
        let mut echoed = out;
        echoed["TASKID"] = Value::String(task.taskid.clone());
        echoed["jobnumber"] = Value::String(task.jobnumber.to_string());
        self.store.touch("tasks", &task.taskid, now);
        self.store.tasks.push(task);
        results.inserts.push(echoed);
    }

    fn client_note(&mut self, e: &Element, results: &mut Results) {
        let mut out = echo(e);
        let now = self.now_ms;
        let content = e.text_of("content").unwrap_or_default();
        if too_long(&content, 1000) {
            let insert = e.text_of("noteid").is_none();
            return results.fail(
                insert,
                out,
                "100",
                "Validation failed",
                "content is longer than 1000 characters",
            );
        }
        if let Some(id) = e.text_of("noteid").filter(|i| !i.is_empty()) {
            let Some(note) = self.store.clientnotes.iter_mut().find(|n| n.noteid == id) else {
                return results.fail(false, out, "404", "Record not found", "No client note with that noteid");
            };
            if content.is_empty() {
                return results.fail(false, out, "100", "Validation failed", "content is required");
            }
            note.content = content;
            out["NOTEID"] = Value::String(id);
            return results.updates.push(out);
        }
        let client = e.text_of("clientid").unwrap_or_default();
        let filter = e.text_of("filter").and_then(|f| valid_filter(&f));
        let problem = if self.store.client(&client).is_none() {
            Some("clientid is missing or unknown")
        } else if content.is_empty() {
            Some("content is required")
        } else if filter.is_none() {
            Some("filter is missing or not a note filter")
        } else {
            None
        };
        if let Some(problem) = problem {
            return results.fail(true, out, "100", "Validation failed", problem);
        }
        let note = ClientNote {
            noteid: new_id(self.ids),
            clientid: client,
            content,
            filter: filter.unwrap_or_default(),
            sticky: e.text_of("sticky").is_some_and(|s| truthy(&s)),
            user_id: self.user_id.clone(),
            created_ms: now,
        };
        out["NOTEID"] = Value::String(note.noteid.clone());
        out["filter"] = Value::String(filter_code(&note.filter).to_owned());
        self.store.clientnotes.push(note);
        results.inserts.push(out);
    }
}
