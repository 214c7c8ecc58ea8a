//! What a connector target does with its scripted answers, chosen by the input's first line.

use tether_abi::{Connector, Fields, Priority, ReadPosition, ReadRequest, WriteRequest};

/// Runs the operation the first line names (`read <stream>`, `window <stream>`, `check`,
/// `write <action>`) against `connector`; the answers it gets are the rest of the input.
pub fn run(connector: &dyn Connector, op: &str, input: &Fields) {
    let (verb, arg) = op.trim().split_once(' ').unwrap_or((op.trim(), ""));
    match verb {
        "read" => {
            let _ = connector.read(ReadRequest {
                stream: arg.to_owned(),
                position: ReadPosition::Cursor { cursor: None },
                limit: Some(3),
                parent_id: None,
            });
        }
        "window" => {
            let _ = connector.read(ReadRequest {
                stream: arg.to_owned(),
                position: ReadPosition::Window {
                    since: "2026-01-01T00:00:00Z".into(),
                    until: "2026-02-01T00:00:00Z".into(),
                    page: None,
                },
                limit: Some(3),
                parent_id: None,
            });
        }
        "check" => {
            let _ = connector.check();
        }
        "write" | "update" => {
            let _ = connector.write(WriteRequest {
                action: arg.to_owned(),
                priority: Priority::default(),
                target_id: (verb == "update").then(|| "T1".to_owned()),
                parent_id: Some("P1".into()),
                input: input.clone(),
            });
        }
        _ => {}
    }
}
