//! `lever serve`: the config file read, the artifact loaded (a single artifact file is
//! watched), and the server run until it is stopped.

use super::{EngineArg, io_error};
use crate::compile;
use std::path::PathBuf;
use std::process::ExitCode;

pub(super) fn serve(
    artifact: &[PathBuf],
    evidence: String,
    listen: &str,
    engine: EngineArg,
    config: Option<PathBuf>,
    allow_empty: bool,
) -> ExitCode {
    let config = match &config {
        None => crate::server::Config::default(),
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => return io_error(format!("{}: {e}", path.display())),
            };
            match crate::server::Config::from_toml(&text, &path.display().to_string()) {
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
        [one] if compile::load::is_artifact_path(one) => Some(one.clone()),
        _ => None,
    };
    let load = compile::load::LoadOptions { allow_empty };
    let artifact = match crate::cli::run::artifact_for(artifact, load) {
        Ok(a) => std::sync::Arc::new(a),
        Err(code) => return code,
    };
    let options = crate::server::Options {
        artifact,
        evidence,
        engine: engine.into(),
        base_dir: PathBuf::from("."),
        config,
        watch: watch_path,
        load,
    };
    match crate::server::serve(options, listen) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
