//! The AroFlo emulator over HTTP: signing, the query language, paging, postxml, limits, faults.

#[path = "aroflo/client.rs"]
mod client;

use client::{emulator, get, post, query, send_get, Signer};
use serde_json::Value;
use tether_sandbox::aroflo::{abn_is_valid, AroFloLimits};
use tether_sandbox::FaultConfig;

const SINCE_2000: &str = "and|datetimeinserted|>|2000/01/01";

#[tokio::test]
async fn signed_requests_pass_and_tampered_stale_or_unsigned_ones_are_refused() {
    let aroflo = emulator(5).await;
    let ok = get(&aroflo, &[("zone", "clients"), ("where", SINCE_2000)]).await;
    assert_eq!((ok.http, ok.status(), ok.message()), (200, "0", "Login OK"));
    assert_eq!(ok.rows("clients").len(), 5);

    let signer = Signer::new(&aroflo.credentials);
    let signed = query(&[("zone", "clients"), ("where", SINCE_2000), ("page", "1")]);
    let tampered = send_get(&aroflo, &signer, &signed, &signed.replace("page=1", "page=2")).await;
    assert_eq!(
        (tampered.status(), tampered.message()),
        ("-99999", "Authentication Failed - Signatures do not match")
    );

    // The raw string is what is signed: `*` left unescaped (JavaScript) and escaped (Python) both verify.
    let star_raw = "zone=clients&where=and%7Cclientid%7CIN%7Ca*b";
    let star_escaped = "zone=clients&where=and%7Cclientid%7CIN%7Ca%2Ab";
    assert_eq!(send_get(&aroflo, &signer, star_raw, star_raw).await.status(), "0");
    assert_eq!(
        send_get(&aroflo, &signer, star_escaped, star_escaped).await.status(),
        "0"
    );

    let mut stale = Signer::new(&aroflo.credentials);
    stale.timestamp_ms -= 10 * 60_000;
    let expired = send_get(&aroflo, &stale, &signed, &signed).await;
    assert_eq!(
        (expired.status(), expired.message()),
        ("-99999", "Authentication Failed - Payload has expired")
    );

    let mut with_ip = Signer::new(&aroflo.credentials);
    with_ip.host_ip = Some("203.0.113.10".into());
    assert_eq!(send_get(&aroflo, &with_ip, &signed, &signed).await.status(), "0");

    // Without `text/json` AroFlo answers in XML under `<imsapi>`.
    let mut xml = Signer::new(&aroflo.credentials);
    xml.accept = "text/xml".into();
    let as_xml = send_get(&aroflo, &xml, &signed, &signed).await;
    let text = as_xml.body.as_str().unwrap_or_default();
    assert!(text.contains("<imsapi><status>0</status>"), "{text}");
    assert!(
        text.contains("<clients><client>") && text.contains("</clientid>"),
        "{text}"
    );

    let mut wrong = Signer::new(&aroflo.credentials);
    wrong.credentials.pencoded = "not-the-key".into();
    assert_eq!(send_get(&aroflo, &wrong, &signed, &signed).await.status(), "3");

    // No headers at all (and so no Accept: the answer is XML).
    let bare = reqwest::get(format!("{}?{signed}", aroflo.base_url()))
        .await
        .expect("send");
    let bare = bare.text().await.expect("text");
    assert!(bare.contains("<status>-99999</status>"), "{bare}");
    assert!(bare.contains("Required headers are missing"), "{bare}");

    let put = reqwest::Client::new()
        .put(aroflo.base_url())
        .header("Accept", "text/json")
        .send()
        .await
        .expect("send");
    let put: Value = put.json().await.expect("json");
    assert_eq!(put["status"], "5");
    aroflo.shutdown().await;
}

#[tokio::test]
async fn without_where_the_30_day_default_filter_applies_and_says_so() {
    let aroflo = emulator(60).await;
    let defaulted = get(&aroflo, &[("zone", "clients")]).await;
    assert_eq!(
        defaulted.message(),
        "Login OK. No WHERE clause found, default filter applied."
    );
    let explicit = get(&aroflo, &[("zone", "clients"), ("where", SINCE_2000)]).await;
    assert_eq!(explicit.rows("clients").len(), 60);
    let recent = defaulted.rows("clients").len();
    assert!(recent > 0 && recent < 60, "{recent} of 60 seeded clients are recent");
    let tasks = get(&aroflo, &[("zone", "tasks")]).await;
    assert_eq!(
        tasks.message(),
        "Login OK. No WHERE clause found, default filter applied."
    );
    aroflo.shutdown().await;
}

#[tokio::test]
async fn where_clauses_combine_with_brackets_lists_and_negation() {
    let aroflo = emulator(12).await;
    let all = get(&aroflo, &[("zone", "clients"), ("where", SINCE_2000)])
        .await
        .rows("clients");
    let name = |i: usize| all[i]["clientname"].as_str().unwrap_or_default().to_owned();
    let id = |i: usize| all[i]["clientid"].as_str().unwrap_or_default().to_owned();

    let either = get(
        &aroflo,
        &[
            ("zone", "clients"),
            ("where", SINCE_2000),
            ("where", &format!("and|(|clientname|=|{}", name(0))),
            ("where", &format!("or|clientname|=|{}|)", name(1))),
        ],
    )
    .await;
    assert_eq!(
        either.rows("clients").len(),
        2,
        "{} / {}: {}",
        name(0),
        name(1),
        either.body
    );

    let listed = get(
        &aroflo,
        &[
            ("zone", "clients"),
            ("where", &format!("and|clientid|IN|{}*{}*{}", id(2), id(3), id(4))),
        ],
    )
    .await
    .rows("clients");
    assert_eq!(listed.len(), 3);
    let not_listed = get(
        &aroflo,
        &[
            ("zone", "clients"),
            ("where", SINCE_2000),
            ("where", &format!("and|clientid|NOT IN|{}*{}", id(2), id(3))),
        ],
    )
    .await
    .rows("clients");
    assert_eq!(not_listed.len(), 10);
    let other = get(
        &aroflo,
        &[
            ("zone", "clients"),
            ("where", SINCE_2000),
            ("where", &format!("and|clientid|!=|{}", id(5))),
        ],
    )
    .await
    .rows("clients");
    assert_eq!(other.len(), 11);
    assert!(other.iter().all(|c| c["clientid"] != id(5).as_str()));

    let bad_field = get(&aroflo, &[("zone", "clients"), ("where", "and|phone|=|1")]).await;
    assert_ne!(bad_field.status(), "0");
    assert!(
        bad_field.message().starts_with("Invalid WHERE Clause"),
        "{}",
        bad_field.message()
    );
    let no_conjunction = get(&aroflo, &[("zone", "clients"), ("where", "clientname|=|x")]).await;
    assert!(no_conjunction.message().starts_with("Invalid WHERE Clause"));
    let bad_date = get(
        &aroflo,
        &[("zone", "clients"), ("where", "and|datetimeinserted|>|last week")],
    )
    .await;
    assert!(bad_date.message().starts_with("Invalid WHERE Clause"));

    let ordered = get(
        &aroflo,
        &[
            ("zone", "lastupdate"),
            ("where", "and|zonename|=|clients"),
            ("where", "and|lastupdateutc|>|2000/01/01"),
            ("order", "lastupdateutc|desc"),
        ],
    )
    .await
    .rows("lastupdate");
    assert_eq!(ordered.len(), 12);
    let times: Vec<&str> = ordered.iter().filter_map(|r| r["lastupdateutc"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    let joined = get(
        &aroflo,
        &[
            ("zone", "clients"),
            ("where", &format!("and|clientid|=|{}", id(0))),
            ("join", "contacts,notes"),
        ],
    )
    .await;
    let client = &joined.rows("clients")[0];
    assert!(client["contacts"].as_array().is_some_and(|c| !c.is_empty()));
    assert!(client["notes"].is_array());
    assert!(abn_is_valid(client["abn"].as_str().unwrap_or_default()));
    let mobile = client["contacts"][0]["mobile"].as_str().unwrap_or_default();
    assert!(mobile.starts_with("+61 4") || mobile.starts_with("04"), "{mobile}");
    aroflo.shutdown().await;
}

#[tokio::test]
async fn pages_hold_at_most_500_and_the_last_is_short() {
    let aroflo = emulator(620).await;
    let first = get(
        &aroflo,
        &[
            ("zone", "clients"),
            ("where", SINCE_2000),
            ("page", "1"),
            ("pageSize", "1000"),
        ],
    )
    .await;
    assert_eq!(first.body["zoneresponse"]["maxpageresults"], "500");
    assert_eq!(first.body["zoneresponse"]["currentpageresults"], 500);
    let second = get(&aroflo, &[("zone", "clients"), ("where", SINCE_2000), ("page", "2")]).await;
    assert_eq!(second.body["zoneresponse"]["currentpageresults"], 120);
    assert_eq!(second.body["zoneresponse"]["pagenumber"], "2");
    let ids: std::collections::HashSet<String> = first
        .rows("clients")
        .iter()
        .chain(second.rows("clients").iter())
        .filter_map(|c| c["clientid"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 620);
    aroflo.shutdown().await;
}

#[tokio::test]
async fn postxml_inserts_updates_and_reports_errors_under_status_zero() {
    let aroflo = emulator(2).await;
    let inserted = post(
        &aroflo,
        "clients",
        "<clients><client><clientname><![CDATA[Bondi Plumbing & Gas]]></clientname><firstname>Mia</firstname><surname>Nguyen</surname><phone>(02) 5550 1234</phone></client></clients>",
    )
    .await;
    assert_eq!(inserted.status(), "0");
    let results = inserted.results();
    assert_eq!(results["inserttotal"], 1);
    let client_id = results["inserts"]["clients"][0]["clientid"]
        .as_str()
        .expect("clientid")
        .to_owned();

    let duplicate = post(&aroflo, "clients", "<clients><client><clientname>Bondi Plumbing &amp; Gas</clientname><firstname>A</firstname><surname>B</surname></client></clients>").await;
    assert_eq!(duplicate.status(), "0");
    assert_eq!(duplicate.results()["errors"][0]["code"], "209");
    assert!(duplicate.results()["inserts"]["clients"][0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("already exists")));

    let missing = post(
        &aroflo,
        "clients",
        "<clients><client><clientname>Only a name</clientname></client></clients>",
    )
    .await;
    assert_eq!(missing.results()["errors"].as_array().map(Vec::len), Some(1));

    let updated = post(
        &aroflo,
        "clients",
        &format!("<clients><client><clientid>{client_id}</clientid><email>mia@example.com</email><contacts><contact><givennames>Sam</givennames><surname>Lee</surname></contact></contacts></client></clients>"),
    )
    .await;
    assert_eq!(updated.results()["updatetotal"], "1");
    assert!(updated.results()["updates"]["clients"][0]["contacts"][0]["userid"].is_string());
    let read = get(
        &aroflo,
        &[
            ("zone", "clients"),
            ("where", &format!("and|clientid|=|{client_id}")),
            ("join", "contacts"),
        ],
    )
    .await;
    assert_eq!(read.rows("clients")[0]["email"], "mia@example.com");
    assert_eq!(read.rows("clients")[0]["contacts"][0]["givennames"], "Sam");

    let (org, tasktype) = aroflo.emulator.task_defaults();
    let task = post(
        &aroflo,
        "tasks",
        &format!("<tasks><task><client><clientid>{client_id}</clientid></client><taskname>Blocked drain</taskname><duedate>2026/12/01</duedate><org><orgid>{org}</orgid></org><tasktype><tasktypeid>{tasktype}</tasktypeid></tasktype></task></tasks>"),
    )
    .await;
    let task_id = task.results()["inserts"]["tasks"][0]["TASKID"]
        .as_str()
        .expect("TASKID")
        .to_owned();
    let noted = post(
        &aroflo,
        "tasks",
        &format!("<tasks><task><taskid>{task_id}</taskid><status>Completed</status><description>ignored</description><notes><note><content><![CDATA[Done, <b>all good</b>]]></content><filter>Internal Only</filter><sticky>false</sticky></note></notes></task></tasks>"),
    )
    .await;
    let echo = &noted.results()["updates"]["tasks"][0];
    assert_eq!(echo["notes"][0]["filter"], "0");
    assert!(echo["notes"][0]["NOTEID"].is_string());
    let task_read = get(
        &aroflo,
        &[
            ("zone", "tasks"),
            ("where", &format!("and|taskid|=|{task_id}")),
            ("join", "notes"),
        ],
    )
    .await;
    let task_row = &task_read.rows("tasks")[0];
    assert_eq!(task_row["status"], "completed");
    assert_eq!(task_row["description"], "");
    assert_eq!(task_row["notes"][0]["content"], "Done, <b>all good</b>");
    let bad_status = post(
        &aroflo,
        "tasks",
        &format!("<tasks><task><taskid>{task_id}</taskid><status>Exploded</status></task></tasks>"),
    )
    .await;
    assert_eq!(bad_status.status(), "0");
    assert!(bad_status.results()["updates"]["tasks"][0]["error"].is_string());

    let note = post(&aroflo, "clientnotes", &format!("<clientnotes><clientnote><clientid>{client_id}</clientid><content>Call after 3pm</content><filter>Internal Only</filter></clientnote></clientnotes>")).await;
    assert!(note.results()["inserts"]["clientnotes"][0]["NOTEID"].is_string());
    let long = "x".repeat(1001);
    let too_long = post(&aroflo, "clientnotes", &format!("<clientnotes><clientnote><clientid>{client_id}</clientid><content>{long}</content><filter>Internal Only</filter></clientnote></clientnotes>")).await;
    assert!(too_long.results()["errors"][0]["detail"]
        .as_str()
        .is_some_and(|d| d.contains("1000")));

    let changed = get(
        &aroflo,
        &[
            ("zone", "lastupdate"),
            ("where", "and|zonename|=|tasks"),
            ("where", &format!("and|zoneid|=|{task_id}")),
        ],
    )
    .await;
    assert_eq!(changed.rows("lastupdate").len(), 1);
    aroflo.shutdown().await;
}

#[tokio::test]
async fn limits_answer_429_per_second_and_status_6_per_minute_and_lastupdate_is_free_of_the_daily_budget() {
    let aroflo = emulator(1).await;
    aroflo.emulator.set_rate_limit(AroFloLimits {
        per_second: 100,
        per_minute: 2,
        ..AroFloLimits::default()
    });
    let q = [("zone", "clients"), ("where", SINCE_2000)];
    let first = get(&aroflo, &q).await;
    assert_eq!(
        first.headers.get("x-ratelimit-limit").and_then(|v| v.to_str().ok()),
        Some("2")
    );
    assert_eq!(
        first
            .headers
            .get("x-ratelimit-daily-remaining")
            .and_then(|v| v.to_str().ok()),
        Some("1999")
    );
    get(&aroflo, &q).await;
    let refused = get(&aroflo, &q).await;
    assert_eq!(
        (refused.http, refused.status(), refused.message()),
        (200, "6", "Exceeded Rate Limit - Requests per Minute")
    );

    aroflo.emulator.set_rate_limit(AroFloLimits {
        per_second: 1,
        ..AroFloLimits::default()
    });
    get(&aroflo, &q).await;
    let burst = get(&aroflo, &q).await;
    assert_eq!((burst.http, burst.status()), (429, "429"));
    assert!(burst.headers.get("retry-after").is_some());

    aroflo.emulator.set_rate_limit(AroFloLimits {
        per_second: 100,
        daily: 1,
        ..AroFloLimits::default()
    });
    let lastupdate = [("zone", "lastupdate"), ("where", "and|lastupdateutc|>|2000/01/01")];
    for _ in 0..3 {
        assert_eq!(get(&aroflo, &lastupdate).await.status(), "0");
    }
    assert_eq!(get(&aroflo, &q).await.status(), "0");
    let daily = get(&aroflo, &q).await;
    assert_eq!((daily.status(), daily.message()), ("7", "Exceeded Rate Limit - Daily"));
    aroflo.shutdown().await;
}

#[tokio::test]
async fn injected_faults_and_admin_routes() {
    let aroflo = emulator(3).await;
    aroflo
        .emulator
        .set_faults(FaultConfig {
            error_next: 1,
            error_status: 503,
            rate_limit_next: 1,
            ..FaultConfig::default()
        })
        .expect("faults");
    let q = [("zone", "clients"), ("where", SINCE_2000)];
    assert_eq!(get(&aroflo, &q).await.http, 429);
    assert_eq!(get(&aroflo, &q).await.http, 503);
    assert_eq!(get(&aroflo, &q).await.http, 200);

    let state: Value = reqwest::get(format!("{}_sandbox/state", aroflo.base_url()))
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    assert_eq!(state["clients"].as_array().map(Vec::len), Some(3));
    let ui = reqwest::Client::new()
        .post(format!("{}_sandbox/ui/clients", aroflo.base_url()))
        .body("<clients><client><clientname>Typed In</clientname><firstname>T</firstname><surname>I</surname></client></clients>")
        .send()
        .await
        .expect("ui");
    assert_eq!(ui.status(), 200);
    let postable = get(
        &aroflo,
        &[
            ("zone", "clients"),
            ("where", "and|postable|=|true"),
            ("where", "and|clientname|=|Typed In"),
        ],
    )
    .await;
    assert_eq!(postable.rows("clients").len(), 1);
    let reset = reqwest::Client::new()
        .post(format!("{}_sandbox/reset", aroflo.base_url()))
        .send()
        .await
        .expect("reset");
    assert_eq!(reset.status(), 200);
    assert_eq!(aroflo.emulator.state()["clients"].as_array().map(Vec::len), Some(3));
    aroflo.shutdown().await;
}
