//! The emulated AroFlo site: clients with contacts, job tasks with notes, client notes, users,
//! and the `lastupdate` rows every write leaves. Rendering follows the zone docs' field names.

use crate::timefmt::civil_from_days;
use serde_json::{json, Value};

/// `YYYY/MM/DD HH:mm:ss`, the style AroFlo uses for most UTC date-times.
pub fn slash_datetime(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    let rem = ms.rem_euclid(86_400_000);
    format!(
        "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}",
        rem / 3_600_000,
        (rem / 60_000) % 60,
        (rem / 1000) % 60
    )
}

pub fn slash_date(ms: i64) -> String {
    slash_datetime(ms)[..10].to_owned()
}

/// `Nov 14, 2018 2:56:20 PM`, task notes' `timeposted`.
pub fn us_datetime(ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    let rem = ms.rem_euclid(86_400_000);
    let hour = rem / 3_600_000;
    let (h12, meridiem) = match hour {
        0 => (12, "AM"),
        1..=11 => (hour, "AM"),
        12 => (12, "PM"),
        _ => (hour - 12, "PM"),
    };
    let month = MONTHS.get((m as usize).saturating_sub(1)).copied().unwrap_or("Jan");
    format!(
        "{month} {d}, {y} {h12}:{:02}:{:02} {meridiem}",
        (rem / 60_000) % 60,
        (rem / 1000) % 60
    )
}

fn flag(b: bool) -> &'static str {
    if b {
        "TRUE"
    } else {
        "FALSE"
    }
}

/// A value a WHERE clause compares against.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Text(String),
    Bool(bool),
    /// Compared at second precision.
    Time(i64),
    /// Compared at day precision (`date*` fields).
    Day(i64),
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Address {
    pub addressline1: String,
    pub addressline2: String,
    pub suburb: String,
    pub state: String,
    pub postcode: String,
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Contact {
    pub userid: String,
    pub givennames: String,
    pub surname: String,
    pub phone: String,
    pub mobile: String,
    pub email: String,
    pub archived: bool,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Client {
    pub clientid: String,
    pub clientname: String,
    pub firstname: String,
    pub surname: String,
    pub shortname: String,
    pub abn: String,
    pub phone: String,
    pub mobile: String,
    pub email: String,
    pub website: String,
    pub address: Address,
    pub archived: bool,
    pub postable: bool,
    pub externalid: String,
    pub org_id: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub contacts: Vec<Contact>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskNote {
    pub noteid: String,
    pub content: String,
    pub filter: String,
    pub sticky: bool,
    pub user_id: String,
    pub posted_ms: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Task {
    pub taskid: String,
    pub jobnumber: u64,
    pub client_id: String,
    pub taskname: String,
    pub description: String,
    /// Lower-case, no spaces: `notstarted`, `inprogress`, `pending`, `completed`, `archived`.
    pub status: String,
    pub substatus_id: String,
    pub org_id: String,
    pub tasktype_id: String,
    pub contactname: String,
    pub contactphone: String,
    pub custon: String,
    pub linkprocessed: bool,
    pub duedate_ms: i64,
    pub requested_ms: i64,
    pub completed_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub notes: Vec<TaskNote>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClientNote {
    pub noteid: String,
    pub clientid: String,
    pub content: String,
    pub filter: String,
    pub sticky: bool,
    pub user_id: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct User {
    pub userid: String,
    pub givennames: String,
    pub surname: String,
    pub username: String,
    pub email: String,
    pub phone: String,
    pub position: String,
    pub archived: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Named {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LastUpdate {
    pub zonename: String,
    pub zoneid: String,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Store {
    /// Business units (`org/orgid` on tasks).
    pub orgs: Vec<Named>,
    pub task_types: Vec<Named>,
    pub substatuses: Vec<Named>,
    pub users: Vec<User>,
    pub clients: Vec<Client>,
    pub tasks: Vec<Task>,
    pub clientnotes: Vec<ClientNote>,
    pub lastupdate: Vec<LastUpdate>,
    pub next_jobnumber: u64,
}

impl Store {
    /// Records (or moves) the `lastupdate` row of one record.
    pub fn touch(&mut self, zonename: &str, zoneid: &str, at_ms: i64) {
        self.lastupdate
            .retain(|r| !(r.zonename == zonename && r.zoneid == zoneid));
        self.lastupdate.push(LastUpdate {
            zonename: zonename.to_owned(),
            zoneid: zoneid.to_owned(),
            updated_ms: at_ms,
        });
    }

    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.clientid == id)
    }

    fn org(&self, id: &str) -> Value {
        let name = self
            .orgs
            .iter()
            .find(|o| o.id == id)
            .map(|o| o.name.clone())
            .unwrap_or_default();
        json!({"orgid": id, "orgname": name})
    }

    fn user_ref(&self, id: &str) -> Value {
        let name = self
            .users
            .iter()
            .find(|u| u.userid == id)
            .map(|u| u.username.clone())
            .unwrap_or_default();
        json!({"userid": id, "username": name})
    }

    pub fn dump(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

fn address(a: &Address) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
}

impl Contact {
    pub fn render(&self, client: &Client) -> Value {
        json!({
            "userid": self.userid, "givennames": self.givennames, "surname": self.surname,
            "phone": self.phone, "mobile": self.mobile, "fax": "", "email": self.email, "email2": "",
            "username": self.userid, "contacttype": "client", "accesstype": "Client",
            "archived": self.archived.to_string(),
            "org": {"orgid": client.clientid, "orgname": client.clientname},
            "createdutc": slash_datetime(self.created_ms),
        })
    }

    pub fn field(&self, name: &str) -> Option<FieldValue> {
        Some(match name {
            "userid" => FieldValue::Text(self.userid.clone()),
            "archived" => FieldValue::Bool(self.archived),
            "contacttype" => FieldValue::Text("client".into()),
            "createdutc" | "createddatetimeutc" => FieldValue::Time(self.created_ms),
            _ => return None,
        })
    }
}

impl Client {
    pub fn render(&self, store: &Store, joins: &[String]) -> Value {
        let mut v = json!({
            "clientid": self.clientid, "clientname": self.clientname, "firstname": self.firstname,
            "surname": self.surname, "shortname": self.shortname, "abn": self.abn, "phone": self.phone,
            "mobile": self.mobile, "fax": "", "email": self.email, "website": self.website,
            "address": address(&self.address), "mailingaddress": address(&self.address),
            "orgs": [store.org(&self.org_id)],
            "link": {"orgid": self.org_id, "externalid": self.externalid},
            "postable": flag(self.postable), "archived": self.archived.to_string(),
            "datecreated": slash_date(self.created_ms), "dateinserted": slash_date(self.created_ms),
            "datetimeinserted": slash_datetime(self.created_ms),
            "lastupdatedatetimeutc": slash_datetime(self.updated_ms),
        });
        for join in joins {
            let joined = match join.as_str() {
                "contacts" => Value::Array(self.contacts.iter().map(|c| c.render(self)).collect()),
                "notes" => Value::Array(
                    store
                        .clientnotes
                        .iter()
                        .filter(|n| n.clientid == self.clientid)
                        .map(|n| n.render(store))
                        .collect(),
                ),
                "locations" | "customfields" | "locationcustomfields" | "priorities" | "documentsandphotos" => {
                    Value::Array(Vec::new())
                }
                _ => continue,
            };
            v[join.as_str()] = joined;
        }
        v
    }

    pub fn field(&self, name: &str) -> Option<FieldValue> {
        Some(match name {
            "clientid" => FieldValue::Text(self.clientid.clone()),
            "clientname" => FieldValue::Text(self.clientname.clone()),
            "archived" => FieldValue::Bool(self.archived),
            "postable" => FieldValue::Bool(self.postable),
            "datecreated" | "dateinserted" => FieldValue::Day(self.created_ms),
            "datetimeinserted" | "createdutc" => FieldValue::Time(self.created_ms),
            "lastupdateutc" | "lastupdatedatetimeutc" => FieldValue::Time(self.updated_ms),
            _ => return None,
        })
    }
}

/// The numeric `filter` AroFlo echoes on insert (reference §2.8 ⚠).
pub fn filter_code(filter: &str) -> &'static str {
    match filter.to_ascii_lowercase().as_str() {
        "internal admin only" => "4",
        "internal admin and manager only" => "5",
        "show client" => "1",
        "show contractor" => "2",
        "show all" => "3",
        _ => "0",
    }
}

pub const NOTE_FILTERS: &[&str] = &[
    "Internal Admin Only",
    "Internal Admin and Manager Only",
    "Internal Only",
    "Show Client",
    "Show Contractor",
    "Show All",
];

impl TaskNote {
    pub fn render(&self, store: &Store) -> Value {
        json!({
            "noteid": self.noteid, "content": self.content, "note": self.content,
            "filter": self.filter, "sticky": self.sticky.to_string(),
            "dateposted": slash_date(self.posted_ms), "timeposted": us_datetime(self.posted_ms),
            "user": store.user_ref(&self.user_id),
        })
    }
}

pub const TASK_STATUSES: &[(&str, &str)] = &[
    ("notstarted", "Not Started"),
    ("inprogress", "In Progress"),
    ("pending", "Pending"),
    ("completed", "Completed"),
    ("archived", "Archived"),
];

impl Task {
    pub fn render(&self, store: &Store, joins: &[String]) -> Value {
        let client = store.client(&self.client_id);
        let substatus = store.substatuses.iter().find(|s| s.id == self.substatus_id);
        let tasktype = store.task_types.iter().find(|t| t.id == self.tasktype_id);
        let mut v = json!({
            "taskid": self.taskid, "jobnumber": self.jobnumber.to_string(), "taskname": self.taskname,
            "description": self.description, "status": self.status,
            "substatus": {"substatusid": self.substatus_id, "substatus": substatus.map(|s| s.name.clone()).unwrap_or_default()},
            "tasktype": tasktype.map(|t| t.name.clone()).unwrap_or_default(),
            "tasktasktype": {"tasktypeid": self.tasktype_id, "tasktype": tasktype.map(|t| t.name.clone()).unwrap_or_default()},
            "client": {"clientid": self.client_id, "clientname": client.map(|c| c.clientname.clone()).unwrap_or_default()},
            "org": store.org(&self.org_id),
            "contactname": self.contactname, "contactphone": self.contactphone, "custon": self.custon,
            "requestdate": slash_date(self.requested_ms), "requestdatetime": slash_datetime(self.requested_ms),
            "duedate": slash_date(self.duedate_ms), "duedatetime": slash_datetime(self.duedate_ms),
            "completeddate": self.completed_ms.map(slash_date).unwrap_or_default(),
            "completeddatetime": self.completed_ms.map(slash_datetime).unwrap_or_default(),
            "createdutc": slash_date(self.created_ms), "createddatetimeutc": slash_datetime(self.created_ms),
            "lastupdatedutc": slash_date(self.updated_ms), "lastupdateddatetimeutc": slash_datetime(self.updated_ms),
            "linkprocessed": self.linkprocessed.to_string(),
            "tasklocation": {"locationid": "", "locationname": ""},
        });
        for join in joins {
            let joined = match join.as_str() {
                "notes" | "tasknotes" => Value::Array(self.notes.iter().map(|n| n.render(store)).collect()),
                _ => Value::Array(Vec::new()),
            };
            v[join.as_str()] = joined;
        }
        v
    }

    pub fn field(&self, store: &Store, name: &str) -> Option<FieldValue> {
        let client = || store.client(&self.client_id);
        Some(match name {
            "taskid" => FieldValue::Text(self.taskid.clone()),
            "clientname" => FieldValue::Text(client().map(|c| c.clientname.clone()).unwrap_or_default()),
            "orgid" => FieldValue::Text(self.org_id.clone()),
            "orgname" => FieldValue::Text(
                store
                    .orgs
                    .iter()
                    .find(|o| o.id == self.org_id)
                    .map(|o| o.name.clone())
                    .unwrap_or_default(),
            ),
            "jobnumber" => FieldValue::Text(self.jobnumber.to_string()),
            "tasktypeid" => FieldValue::Text(self.tasktype_id.clone()),
            "status" => FieldValue::Text(self.status.clone()),
            "daterequested" => FieldValue::Day(self.requested_ms),
            "datetimerequested" => FieldValue::Time(self.requested_ms),
            "datecompleted" => FieldValue::Day(self.completed_ms?),
            "datetimecompleted" => FieldValue::Time(self.completed_ms?),
            "lastupdatedutc" | "lastupdated" => FieldValue::Day(self.updated_ms),
            "lastupdateddatetimeutc" => FieldValue::Time(self.updated_ms),
            "duedate" => FieldValue::Day(self.duedate_ms),
            "duedatetime" => FieldValue::Time(self.duedate_ms),
            "linkprocessed" => FieldValue::Bool(self.linkprocessed),
            "createdutc" => FieldValue::Day(self.created_ms),
            "createddatetimeutc" => FieldValue::Time(self.created_ms),
            _ => return None,
        })
    }
}

impl ClientNote {
    pub fn render(&self, store: &Store) -> Value {
        json!({
            "noteid": self.noteid, "clientid": self.clientid, "content": self.content,
            "filter": self.filter, "sticky": if self.sticky { "1" } else { "0" },
            "user": store.user_ref(&self.user_id),
            "created_utc": slash_datetime(self.created_ms), "datetimeposted": slash_datetime(self.created_ms),
        })
    }

    pub fn field(&self, name: &str) -> Option<FieldValue> {
        Some(match name {
            "noteid" => FieldValue::Text(self.noteid.clone()),
            "createdutc" | "dateposted" => FieldValue::Time(self.created_ms),
            _ => return None,
        })
    }
}

impl User {
    pub fn render(&self, store: &Store) -> Value {
        let org = store.orgs.first().map(|o| o.id.clone()).unwrap_or_default();
        json!({
            "userid": self.userid, "givennames": self.givennames, "surname": self.surname,
            "username": self.username, "email": self.email, "email2": "", "phone": self.phone,
            "mobile": "", "fax": "", "accesstype": "Staff", "position": self.position,
            "archived": self.archived.to_string(), "org": store.org(&org),
        })
    }

    pub fn field(&self, name: &str) -> Option<FieldValue> {
        Some(match name {
            "userid" => FieldValue::Text(self.userid.clone()),
            "givennames" => FieldValue::Text(self.givennames.clone()),
            "surname" => FieldValue::Text(self.surname.clone()),
            "position" => FieldValue::Text(self.position.clone()),
            "archived" => FieldValue::Bool(self.archived),
            "createdutc" => FieldValue::Day(self.created_ms),
            "createddatetimeutc" => FieldValue::Time(self.created_ms),
            "lastupdatedutc" => FieldValue::Day(self.updated_ms),
            "lastupdateddatetimeutc" => FieldValue::Time(self.updated_ms),
            _ => return None,
        })
    }
}

impl LastUpdate {
    pub fn render(&self) -> Value {
        let reference = match self.zonename.as_str() {
            "clients" => "clientid",
            "tasks" => "taskid",
            _ => "id",
        };
        json!({
            "zoneid": self.zoneid, "zonename": self.zonename, "zoneidreference": reference,
            "lastupdateutc": slash_datetime(self.updated_ms),
        })
    }

    pub fn field(&self, name: &str) -> Option<FieldValue> {
        Some(match name {
            "zonename" => FieldValue::Text(self.zonename.clone()),
            "zoneid" => FieldValue::Text(self.zoneid.clone()),
            "lastupdateutc" => FieldValue::Time(self.updated_ms),
            _ => return None,
        })
    }
}
