//! Counts the API requests the emulator received, by method and route, so a test or a bench
//! can tell how many calls (and how many writes) a client made. Admin routes are not counted.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Routes that take a POST but change nothing.
const READ_ONLY_POSTS: &[&str] = &["/contacts/search", "/oauth/token"];

/// Requests received so far, keyed `"METHOD /route/{template}"` (unrouted paths count under
/// `"METHOD (no route)"`). Every request counts, whatever the answer (faults and 429s included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    pub by_route: BTreeMap<String, u64>,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.by_route.values().sum()
    }

    /// POST, PUT, PATCH and DELETE calls, except the POSTs that only read (search, token).
    pub fn writes(&self) -> u64 {
        self.by_route
            .iter()
            .filter(|(key, _)| {
                let (method, route) = key.split_once(' ').unwrap_or((key.as_str(), ""));
                match method {
                    "POST" => !READ_ONLY_POSTS.contains(&route),
                    "PUT" | "PATCH" | "DELETE" => true,
                    _ => false,
                }
            })
            .map(|(_, n)| n)
            .sum()
    }
}

#[derive(Debug, Default)]
pub(crate) struct RequestCounter(Mutex<RequestCounts>);

impl RequestCounter {
    pub(crate) fn snapshot(&self) -> RequestCounts {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).by_route.clear();
    }

    fn record(&self, key: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_route
            .entry(key)
            .or_default() += 1;
    }
}

/// Outermost layer: counts before faults or limits can answer.
pub(crate) async fn middleware(State(counter): State<Arc<RequestCounter>>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/_sandbox") {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("(no route)", MatchedPath::as_str);
        counter.record(format!("{} {route}", request.method()));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_leave_out_reads_and_read_only_posts() {
        let counts = RequestCounts {
            by_route: [
                ("GET /contacts/", 5),
                ("POST /contacts/search", 7),
                ("POST /oauth/token", 1),
                ("POST /contacts/upsert", 3),
                ("PUT /contacts/{contactId}", 2),
                ("DELETE /contacts/{contactId}", 1),
            ]
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect(),
        };
        assert_eq!(counts.writes(), 6);
        assert_eq!(counts.total(), 19);
    }

    #[tokio::test]
    async fn the_router_counts_api_calls_by_route_whatever_the_answer_and_not_admin_calls() {
        use crate::ghl::{GhlConfig, GhlEmulator};
        use axum::body::Body;
        use tower::ServiceExt;

        let emu = GhlEmulator::new(GhlConfig::seeded(7, 0)).expect("emulator");
        let location = emu.credentials().location_id.clone();
        let call = |method: &str, uri: String, body: &str| {
            axum::http::Request::builder()
                .method(method)
                .uri(uri)
                .header("Authorization", format!("Bearer {}", emu.credentials().pit))
                .header("Version", "2021-07-28")
                .header("Content-Type", "application/json")
                .body(Body::from(body.to_owned()))
                .expect("request")
        };
        let upsert = format!(r#"{{"locationId":"{location}","email":"ana@example.pt"}}"#);
        let requests = [
            call("GET", format!("/contacts/?locationId={location}"), ""),
            call("POST", "/contacts/upsert".into(), &upsert),
            call("POST", "/contacts/upsert".into(), &upsert),
            call("POST", "/contacts/upsert".into(), "not json"),
            call("GET", "/nowhere".into(), ""),
            call("GET", "/_sandbox/state".into(), ""),
        ];
        let mut statuses = Vec::new();
        for request in requests {
            let response = emu.router().oneshot(request).await.expect("response");
            statuses.push(response.status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 200, 400, 404, 200]);
        let counts = emu.request_counts();
        let expected: BTreeMap<String, u64> = [
            ("GET /contacts/", 1),
            ("POST /contacts/upsert", 3),
            ("GET (no route)", 1),
        ]
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
        assert_eq!(counts.by_route, expected);
        assert_eq!(counts.writes(), 3);
        emu.reset();
        assert_eq!(emu.request_counts().total(), 0);
    }
}
