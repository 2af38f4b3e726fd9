//! `lever lsp`'s stdio loop: JSON-RPC messages in (lsp-server), the open buffers kept, and
//! each request answered from the document's analysis (`author::lsp`), which is reused
//! until a buffer changes.

use crate::author::lsp::{Analysis, at};
use lsp_server::{Connection, Message, Notification, Request, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Runs the server until the client says `exit`.
pub(crate) fn serve() -> Result<(), String> {
    let (connection, io) = Connection::stdio();
    let capabilities = json!({
        "textDocumentSync": 1,
        "hoverProvider": true,
        "definitionProvider": true,
        "completionProvider": { "triggerCharacters": ["."] },
        "documentFormattingProvider": true,
    });
    connection
        .initialize(capabilities)
        .map_err(|e| e.to_string())?;
    let mut docs: BTreeMap<String, String> = BTreeMap::new();
    // Each open document's analysis since the last edit of any buffer: requests between
    // edits reuse it instead of reading the directory and checking the set again.
    let mut analyses: BTreeMap<String, Analysis> = BTreeMap::new();
    for message in &connection.receiver {
        match message {
            Message::Request(req) => {
                if connection
                    .handle_shutdown(&req)
                    .map_err(|e| e.to_string())?
                {
                    break;
                }
                let uri = at(&req.params, &["textDocument", "uri"])
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if !analyses.contains_key(&uri)
                    && let Some(a) = Analysis::of(&docs, &uri)
                {
                    analyses.insert(uri.clone(), a);
                }
                let response = answer(analyses.get(&uri), &req);
                connection
                    .sender
                    .send(Message::Response(response))
                    .map_err(|e| e.to_string())?;
            }
            Message::Notification(n) => {
                let Some(uri) = edit(&mut docs, &n) else {
                    continue;
                };
                // One buffer's text is part of every other open document's set.
                analyses.clear();
                let diagnostics = match Analysis::of(&docs, &uri) {
                    Some(a) => {
                        let d = a.diagnostics();
                        analyses.insert(uri.clone(), a);
                        d
                    }
                    None => Vec::new(),
                };
                let note = Notification::new(
                    "textDocument/publishDiagnostics".into(),
                    json!({ "uri": uri, "diagnostics": diagnostics }),
                );
                connection
                    .sender
                    .send(Message::Notification(note))
                    .map_err(|e| e.to_string())?;
            }
            Message::Response(_) => {}
        }
    }
    // The writer thread ends once the connection's sender is gone.
    drop(connection);
    io.join().map_err(|e| e.to_string())
}

/// Applies a buffer notification (open, change, close); the document it changed, if any.
fn edit(docs: &mut BTreeMap<String, String>, n: &Notification) -> Option<String> {
    let uri = at(&n.params, &["textDocument", "uri"])
        .as_str()?
        .to_string();
    match n.method.as_str() {
        "textDocument/didOpen" => {
            let text = at(&n.params, &["textDocument", "text"])
                .as_str()
                .unwrap_or("");
            docs.insert(uri.clone(), text.to_string());
        }
        "textDocument/didChange" => {
            // Full synchronization: the last change holds the whole text.
            let changes = at(&n.params, &["contentChanges"]).as_array();
            if let Some(text) = changes
                .and_then(|c| c.last())
                .and_then(|c| at(c, &["text"]).as_str())
            {
                docs.insert(uri.clone(), text.to_string());
            }
        }
        "textDocument/didClose" => {
            docs.remove(&uri);
        }
        _ => return None,
    }
    Some(uri)
}

fn answer(analysis: Option<&Analysis>, req: &Request) -> Response {
    let position = at(&req.params, &["position"]);
    let result = match (req.method.as_str(), analysis) {
        (_, None) => Value::Null,
        ("textDocument/hover", Some(a)) => a.hover(position),
        ("textDocument/definition", Some(a)) => a.definition(position),
        ("textDocument/completion", Some(a)) => a.completion(),
        ("textDocument/formatting", Some(a)) => a.formatting(),
        (method, Some(_)) => {
            return Response::new_err(
                req.id.clone(),
                lsp_server::ErrorCode::MethodNotFound as i32,
                format!("`{method}` is not supported"),
            );
        }
    };
    Response::new_ok(req.id.clone(), result)
}
