//! The `lever` binary: the command line ([`lever::cli`]), with `lever serve` handed to the
//! server ([`lever::server`]). This file is where the two meet: neither imports the other.

use lever::cli::ServeArgs;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: the server allocates and frees many small JSON values across threads (request
/// handlers build records, the evidence writer frees them), where glibc's allocator spent
/// about a quarter of the server's time (`docs/server.md`, "Throughput").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    lever::cli::main(serve)
}

/// `lever serve`: the config file read, the artifact loaded (a single artifact file is
/// watched), and the server run until it is stopped.
fn serve(args: ServeArgs) -> ExitCode {
    let ServeArgs {
        artifact,
        evidence,
        listen,
        engine,
        config,
        allow_empty,
        trust,
    } = args;
    let (artifact, listen) = (&artifact[..], &listen[..]);

    let config = match &config {
        None => lever::server::Config::default(),
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => return lever::cli::io_error(format!("{}: {e}", path.display())),
            };
            match lever::server::Config::from_toml(&text, &path.display().to_string()) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    // A single artifact file is watched: replacing it deploys it.
    let watch_path = match artifact {
        [one] if lever::compile::load::is_artifact_path(one) => Some(one.clone()),
        _ => None,
    };
    let keys: Vec<std::path::PathBuf> = config.trust.iter().chain(&trust).cloned().collect();
    let trust = match lever::cli::trust_of(&keys) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let load = lever::compile::load::LoadOptions { allow_empty, trust };
    let artifact = match lever::cli::serve_artifact(artifact, load, &evidence) {
        Ok(a) => std::sync::Arc::new(a),
        Err(code) => return code,
    };
    let options = lever::server::Options {
        artifact,
        evidence,
        engine: engine.into(),
        base_dir: PathBuf::from("."),
        config,
        watch: watch_path,
        load,
    };
    match lever::server::serve(options, listen) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
