//! A real `lever serve` for tests: started in a directory, spoken to over HTTP with a
//! reader's token, stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

/// The token test servers give a reader (`roles = ["read"]`).
pub const READER_TOKEN: &str = "reader-token-0123456789";

pub fn reader_toml() -> String {
    format!(
        "\n[[tokens]]\ntoken = \"{READER_TOKEN}\"\nactor = \"auditor@example.com\"\nroles = [\"read\"]\n"
    )
}

pub struct Served {
    pub child: Child,
    pub base: String,
    pub agent: ureq::Agent,
    /// What the server said on stderr before it listened.
    pub said: String,
}

impl Served {
    pub fn start(dir: &std::path::Path, evidence: &str) -> Served {
        Served::start_with(dir, evidence, &[])
    }

    pub fn start_with(dir: &std::path::Path, evidence: &str, extra: &[&str]) -> Served {
        let examples = super::root().join("examples");
        let mut args = vec![
            "--artifact",
            examples.to_str().unwrap(),
            "--evidence",
            evidence,
        ];
        args.extend(extra);
        Served::launch(dir, &args)
    }

    /// `lever serve ARGS --listen 127.0.0.1:0` in `dir`, once it is listening.
    pub fn launch(dir: &std::path::Path, args: &[&str]) -> Served {
        Served::launch_env(dir, args, &[])
    }

    /// The examples on a file store, their webhook (`/hook`, secret
    /// `s3cret-webhook-key`) and Slack (`/slack`) channels at a local port.
    pub fn with_channels(dir: &std::path::Path, port: u16, extra: &[&str]) -> Served {
        let examples = super::root().join("examples");
        let mut args = vec![
            "--artifact",
            examples.to_str().unwrap(),
            "--evidence",
            "file:ev",
        ];
        args.extend(extra);
        Served::launch_env(
            dir,
            &args,
            &[
                ("OPS_WEBHOOK_URL", format!("http://127.0.0.1:{port}/hook")),
                ("OPS_WEBHOOK_SECRET", "s3cret-webhook-key".to_string()),
                ("SLACK_LLMOPS_URL", format!("http://127.0.0.1:{port}/slack")),
            ],
        )
    }

    pub fn launch_env(dir: &std::path::Path, args: &[&str], envs: &[(&str, String)]) -> Served {
        // Every test server has a reader's token, which `get` sends: reads need one.
        let mut args: Vec<&str> = args.to_vec();
        match args.iter().position(|a| *a == "--config") {
            Some(i) => {
                let config = dir.join(args[i + 1]);
                let mut text = std::fs::read_to_string(&config).unwrap();
                if !text.contains(READER_TOKEN) {
                    text.push_str(&reader_toml());
                    std::fs::write(&config, text).unwrap();
                }
            }
            None => {
                std::fs::write(dir.join("lever-test.toml"), reader_toml()).unwrap();
                args.extend(["--config", "lever-test.toml"]);
            }
        }
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lever"))
            .arg("serve")
            .args(&args)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .args(["--listen", "127.0.0.1:0"])
            .env("LEVER_TEST_TOKEN_DAVE", "dave-token-0123456789")
            .current_dir(dir)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        // What the server says before it listens (a spill written, a warning), then where.
        let mut said = String::new();
        let base = loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "the server exited: {said}"
            );
            if let Some(addr) = line.trim().strip_prefix("lever: serving on ") {
                break addr.to_string();
            }
            said.push_str(&line);
        };
        // Keep reading standard error so that the server never blocks on it.
        std::thread::spawn(move || for _ in stderr.lines() {});
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Served {
            child,
            base,
            agent,
            said,
        }
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        self.post_as(None, path, body)
    }

    pub fn post_as(&self, token: Option<&str>, path: &str, body: &str) -> (u16, String) {
        let mut req = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        let mut r = req.send(body).unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let mut r = self
            .agent
            .get(&format!("{}{path}", self.base))
            .header("authorization", &format!("Bearer {READER_TOKEN}"))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    /// The active artifact's id.
    pub fn artifact_of_id(&self) -> String {
        let (_, text) = self.get("/v1/policies");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["artifact"].as_str().unwrap().to_string()
    }

    /// SIGKILL: the server dies mid-flight, as in a crash.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        self.child.wait().unwrap().code()
    }
}

/// A test that fails leaves no server behind.
impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
