//! What `lever serve` refuses and how it stays up: reads and ingest behind tokens, bodies
//! bounded and JSON only, every error answer JSON, connections that never finish their
//! headers closed, a connection limit answered with a clear 503.

use super::served::{READER_TOKEN, Served};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn raw_request(base: &str, request: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn json_error(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    v["error"].as_str().unwrap().to_string()
}

fn config(dir: &std::path::Path, server: &str) {
    std::fs::write(
        dir.join("lever.toml"),
        format!(
            "[server]\n{server}\n\n[[tokens]]\ntoken = \"ingest-token-0123456789\"\nactor = \"agent@example.com\"\nroles = [\"ingest\"]\n\n[[tokens]]\ntoken = \"plain-token-0123456789\"\nactor = \"bob@example.com\"\n"
        ),
    )
    .unwrap();
}

fn start(dir: &std::path::Path) -> Served {
    Served::start_with(dir, "file:ev", &["--config", "lever.toml"])
}

const RUN: &str = r#"{"run_id":"r1","ts":"2026-01-20T10:00:00Z","tenant":"acme"}"#;

#[test]
fn reads_need_a_read_token_and_ingest_can_need_one() {
    let tmp = tempfile::tempdir().unwrap();
    config(tmp.path(), "require_ingest_token = true");
    let served = start(tmp.path());
    let (status, body) = served.post("/v1/runs", RUN);
    assert_eq!(status, 401, "{body}");
    assert!(json_error(&body).contains("bearer token"));
    let (status, body) = served.post_as(Some("plain-token-0123456789"), "/v1/runs", RUN);
    assert_eq!(status, 403, "{body}");
    let (status, body) = served.post_as(Some("ingest-token-0123456789"), "/v1/runs", RUN);
    assert_eq!(status, 200, "{body}");
    for path in ["/v1/runs/r1/evidence", "/v1/alerts", "/v1/policies"] {
        let url = format!("{}{path}", served.base);
        let anonymous = served.agent.get(&url).call().unwrap();
        assert_eq!(anonymous.status().as_u16(), 401, "{path}");
        let plain = served
            .agent
            .get(&url)
            .header("authorization", "Bearer plain-token-0123456789")
            .call()
            .unwrap();
        assert_eq!(plain.status().as_u16(), 403, "{path}");
        assert_eq!(served.get(path).0, 200, "{path} with {READER_TOKEN}");
    }
    assert_eq!(served.stop(), Some(0));

    let tmp = tempfile::tempdir().unwrap();
    config(tmp.path(), "public_reads = true");
    let mut served = start(tmp.path());
    assert_eq!(served.post("/v1/runs", RUN).0, 200);
    let url = format!("{}/v1/runs/r1/evidence", served.base);
    assert_eq!(
        served.agent.get(&url).call().unwrap().status().as_u16(),
        200
    );
    let warned = served.said.clone();
    assert!(warned.contains("public_reads"), "{warned}");
    served.child.kill().unwrap();
}

#[test]
fn every_error_answer_is_json_and_bodies_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    config(tmp.path(), "max_body_bytes = 1024");
    let served = start(tmp.path());
    let base = served.base.clone();
    let (status, body) = raw_request(
        &base,
        "GET /nowhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 404);
    assert!(json_error(&body).contains("/nowhere"));
    let (status, body) = raw_request(
        &base,
        "DELETE /v1/runs HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert!(json_error(&body).contains("DELETE"));
    let form = "ts=now";
    let (status, body) = raw_request(
        &base,
        &format!(
            "POST /v1/runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{form}",
            form.len()
        ),
    );
    assert_eq!(status, 415);
    assert!(json_error(&body).contains("application/json"));
    let big = format!(
        r#"{{"run_id":"big","ts":"2026-01-20T10:00:00Z","tenant":"{}"}}"#,
        "x".repeat(2000)
    );
    let (status, body) = served.post("/v1/runs", &big);
    assert_eq!(status, 413, "{body}");
    assert!(json_error(&body).contains("max_body_bytes = 1024"));
    let bytes = b"{\"run_id\":\"\xff\"}";
    let mut request = format!("POST /v1/runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", bytes.len()).into_bytes();
    request.extend_from_slice(bytes);
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(&request).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.contains(" 400 ") && answer.contains("not UTF-8"),
        "{answer}"
    );
    assert_eq!(served.stop(), Some(0));
}

#[test]
fn connections_that_never_finish_their_headers_are_closed_and_the_limit_answers_503() {
    let tmp = tempfile::tempdir().unwrap();
    config(
        tmp.path(),
        "header_read_timeout = \"1s\"\nmax_connections = 8\nrequest_timeout = \"1s\"",
    );
    let served = start(tmp.path());
    let addr = served.base.trim_start_matches("http://").to_string();
    let mut half: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"POST /v1/runs HTTP/1.1\r\nhost: x\r\ncontent-")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // Past the limit, a connection is answered at once and closed.
    let (status, body) = raw_request(&served.base, "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(status, 503);
    assert!(json_error(&body).contains("max_connections"));
    // The half-sent headers time out, and the server answers again.
    let started = Instant::now();
    for s in &mut half {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed after {:?}",
        started.elapsed()
    );
    assert_eq!(served.get("/healthz").0, 200);
    // A body that never comes whole: the request times out, answered in JSON.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /v1/runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"run").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(
        answer.contains(" 408 ") && answer.contains("request_timeout"),
        "{answer}"
    );
    assert_eq!(served.stop(), Some(0));
}

#[test]
fn an_empty_or_policy_free_artifact_is_never_deployed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("lever.toml"),
        "[[tokens]]\ntoken = \"admin-token-0123456789\"\nactor = \"ops@example.com\"\nadmin = true\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("nothing.policy"), "import std.llm\n").unwrap();
    let out = super::lever(
        tmp.path(),
        &["build", "nothing.policy", "-o", "nothing.lvc"],
    );
    assert_eq!(out.status.code(), Some(0));
    let served = start(tmp.path());
    let put = |bytes: Vec<u8>| {
        let mut r = served
            .agent
            .put(&format!("{}/v1/artifacts", served.base))
            .header("authorization", "Bearer admin-token-0123456789")
            .send(&bytes[..])
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let (status, body) = put(Vec::new());
    assert_eq!(status, 422, "{body}");
    assert!(json_error(&body).contains("empty"), "{body}");
    let (status, body) = put(std::fs::read(tmp.path().join("nothing.lvc")).unwrap());
    assert_eq!(status, 422, "{body}");
    assert!(json_error(&body).contains("holds no policy"), "{body}");
    // The active policies still govern.
    let (status, text) = served.post("/v1/runs", RUN);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"snapshot\":\"blake3:"), "{text}");
    assert_eq!(served.stop(), Some(0));
}
