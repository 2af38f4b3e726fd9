//! The real `lever serve` for the benches that time it: started, and stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// `lever serve ARGS --listen 127.0.0.1:0` in `dir`, once it listens: the process, its
/// address, and what it said before (warnings, how many runs it rebuilt).
pub fn serve(dir: &std::path::Path, args: &[&str]) -> (Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lever"))
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
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
    std::thread::spawn(move || for _ in stderr.lines() {});
    (child, base, said)
}

/// SIGTERM, and the exit.
pub fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}
