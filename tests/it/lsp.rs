//! `lever lsp` driven over stdio as an editor drives it: diagnostics as a document
//! changes, hover, go to definition across files, completion, formatting, shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

struct Client {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next_id: u64,
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lever"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Client {
            child,
            input,
            output,
            next_id: 0,
        }
    }

    fn send(&mut self, message: serde_json::Value) {
        let body = message.to_string();
        write!(self.input, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.input.flush().unwrap();
    }

    fn receive(&mut self) -> serde_json::Value {
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.output.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.output.read_exact(&mut body).unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn request(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        );
        loop {
            let m = self.receive();
            if m["id"] == id {
                return m;
            }
        }
    }

    fn notify(&mut self, method: &str, params: serde_json::Value) {
        self.send(serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The next diagnostics published.
    fn diagnostics(&mut self) -> serde_json::Value {
        loop {
            let m = self.receive();
            if m["method"] == "textDocument/publishDiagnostics" {
                return m["params"].clone();
            }
        }
    }
}

#[test]
fn an_editor_gets_diagnostics_hover_definitions_completion_and_formatting() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    std::fs::write(
        dir.join("shared.policy"),
        "import std.llm\nchannel ops = slack(url: env(\"OPS\"))\nconst CAP = $5.00\nmonitor gpt4_cost = sum(step.cost where step.model == \"gpt-4o\")\n",
    )
    .unwrap();
    let uri = format!("file://{}/main.policy", dir.display());
    let shared_uri = format!("file://{}/shared.policy", dir.display());
    // Line 4 limits a usd monitor in tokens: E0201 at `100 tokens` (columns 22 to 32).
    let broken = "import std.llm\npolicy p {\n    version 1\n    scope all\n    limit gpt4_cost to 100 tokens { breach => stop }\n}\n";
    let fixed = "import std.llm\npolicy p {\n    version 1\n    scope all\n    limit gpt4_cost to CAP { breach => stop, alert(ops) }\n}\n";

    let mut c = Client::start();
    let init = c.request(
        "initialize",
        serde_json::json!({"processId": null, "rootUri": null, "capabilities": {}}),
    );
    assert_eq!(init["result"]["capabilities"]["hoverProvider"], true);
    c.notify("initialized", serde_json::json!({}));

    c.notify(
        "textDocument/didOpen",
        serde_json::json!({"textDocument": {"uri": uri, "languageId": "lever", "version": 1, "text": broken}}),
    );
    let published = c.diagnostics();
    assert_eq!(published["uri"], uri.as_str());
    let d = &published["diagnostics"][0];
    assert_eq!(d["code"], "E0201");
    assert_eq!(d["severity"], 1);
    assert_eq!(
        d["range"],
        serde_json::json!({"start": {"line": 4, "character": 23}, "end": {"line": 4, "character": 33}})
    );

    // As you type: the fixed text, which reads the other file's const and channel.
    c.notify(
        "textDocument/didChange",
        serde_json::json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": fixed}]}),
    );
    assert_eq!(c.diagnostics()["diagnostics"], serde_json::json!([]));

    // Hover on `gpt4_cost` (line 4, column 12): its declaration and its unit.
    let hover = c.request(
        "textDocument/hover",
        serde_json::json!({"textDocument": {"uri": uri}, "position": {"line": 4, "character": 12}}),
    );
    let text = hover["result"]["contents"]["value"].as_str().unwrap();
    assert!(
        text.contains("monitor gpt4_cost = sum(step.cost where step.model == \"gpt-4o\")"),
        "{text}"
    );
    assert!(text.ends_with("monitor `gpt4_cost`: usd"), "{text}");
    // Go to the definition of `ops` (line 4, column 52): shared.policy line 1.
    let def = c.request(
        "textDocument/definition",
        serde_json::json!({"textDocument": {"uri": uri}, "position": {"line": 4, "character": 52}}),
    );
    assert_eq!(def["result"]["uri"], shared_uri.as_str());
    assert_eq!(
        def["result"]["range"]["start"],
        serde_json::json!({"line": 1, "character": 8})
    );
    // And of `CAP` (column 24): line 2.
    let def = c.request(
        "textDocument/definition",
        serde_json::json!({"textDocument": {"uri": uri}, "position": {"line": 4, "character": 24}}),
    );
    assert_eq!(
        def["result"]["range"]["start"],
        serde_json::json!({"line": 2, "character": 6})
    );

    let completion = c.request(
        "textDocument/completion",
        serde_json::json!({"textDocument": {"uri": uri}, "position": {"line": 4, "character": 0}}),
    );
    let labels: Vec<&str> = completion["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    for want in [
        "limit",
        "breach",
        "gpt4_cost",
        "ops",
        "CAP",
        "std.llm.cost",
        "step.cost",
    ] {
        assert!(labels.contains(&want), "no {want} in {labels:?}");
    }

    // Formatting: one edit giving `lever fmt`'s layout.
    c.notify(
        "textDocument/didChange",
        serde_json::json!({"textDocument": {"uri": uri, "version": 3}, "contentChanges": [{"text": "policy   p{version 1 scope all}\n"}]}),
    );
    c.diagnostics();
    let edits = c.request(
        "textDocument/formatting",
        serde_json::json!({"textDocument": {"uri": uri}, "options": {"tabSize": 4, "insertSpaces": true}}),
    );
    assert_eq!(
        edits["result"][0]["newText"],
        "policy p {\n    version 1\n    scope all\n}\n"
    );

    let shutdown = c.request("shutdown", serde_json::Value::Null);
    assert!(shutdown.get("error").is_none(), "{shutdown}");
    c.notify("exit", serde_json::Value::Null);
    assert_eq!(c.child.wait().unwrap().code(), Some(0));
}
