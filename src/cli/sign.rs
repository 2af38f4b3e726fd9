//! Signing: `lever keygen`, `lever build --sign`, `lever verify-artifact`, and the trust
//! `--trust` gives `lever run` and `lever serve`.

use crate::base::trust::{SecretKey, Trust, signature_path};
use crate::compile::load::{self, LoadOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The trust of `--trust` paths (none given: none asked for). It is given once and lasts
/// as long as the process, so it is leaked into a `'static` for the loaders to share.
pub fn trust_of(paths: &[PathBuf]) -> Result<Option<&'static Trust>, ExitCode> {
    if paths.is_empty() {
        return Ok(None);
    }
    match Trust::load(paths) {
        Ok(trust) => Ok(Some(Box::leak(Box::new(trust)))),
        Err(e) => {
            eprintln!("error: --trust: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// The artifact `lever serve` starts with. Under trust, a refusal is also recorded in the
/// store as a `deploy_refused` record (actor `lever-serve`), as a refused deploy is.
pub fn serve_artifact(
    paths: &[PathBuf],
    options: LoadOptions,
    evidence: &str,
) -> Result<crate::compile::artifact::Artifact, ExitCode> {
    let why = match paths {
        _ if options.trust.is_none() => return super::artifact_for(paths, options),
        [one] if load::is_artifact_path(one) => match load::load_file(one, options) {
            Ok(a) => return Ok(a),
            Err(e) => format!("{}: {e}", one.display()),
        },
        _ => load::SOURCES_UNSIGNED.to_string(),
    };
    eprintln!("error: {why}");
    if let Err(e) = record_refusal(evidence, "lever-serve", &why) {
        eprintln!("lever: the refusal could not be recorded: {e}");
    }
    Err(ExitCode::from(1))
}

/// Appends a `deploy_refused` record to the store chain.
fn record_refusal(url: &str, actor: &str, why: &str) -> Result<(), String> {
    let mut store = crate::evidence::open(url).map_err(|e| e.to_string())?;
    let record = crate::evidence::deploy_refused(actor, why);
    store
        .append(&[crate::evidence::Sealed::new(record)])
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `lever keygen --out KEY`: writes `KEY` (0600) and `KEY.pub`; never overwrites.
pub(super) fn keygen(out: &Path) -> ExitCode {
    let public = PathBuf::from(format!("{}.pub", out.display()));
    let key = match SecretKey::generate() {
        Ok(k) => k,
        Err(e) => return super::io_error(e),
    };
    if let Err(e) = write_new(out, &key.to_text(), 0o600)
        .and_then(|()| write_new(&public, &key.public().to_text(), 0o644))
    {
        return super::io_error(e);
    }
    println!("{}", key.public().id);
    eprintln!(
        "lever: wrote {} (secret: keep it out of the repository) and {} (give it to --trust)",
        out.display(),
        public.display()
    );
    ExitCode::SUCCESS
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `lever build --sign KEY`: the signature of a built artifact, written beside it.
pub(super) fn sign_built(key: &Path, output: &Path, artifact_id: &str) -> Result<String, String> {
    let key = SecretKey::read(key)?;
    let path = signature_path(output);
    super::build::write_atomically(&path, key.sign(artifact_id).as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(key.public().id)
}

/// `lever verify-artifact A --trust KEYS [--signature S]`.
pub(super) fn verify_artifact(
    artifact: &Path,
    trust: &[PathBuf],
    signature: Option<&Path>,
) -> ExitCode {
    let trust = match trust_of(trust) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let bytes = match std::fs::read(artifact) {
        Ok(b) => b,
        Err(e) => return super::io_error(format!("{}: {e}", artifact.display())),
    };
    let sig_path = signature.map_or_else(|| signature_path(artifact), Path::to_path_buf);
    let line = std::fs::read_to_string(&sig_path).ok();
    let options = LoadOptions {
        allow_empty: true,
        trust,
    };
    let place = sig_path.display().to_string();
    match load::load_signed(bytes, line.as_deref(), &place, options) {
        Ok(a) => {
            println!(
                "verified: {} signed by {}",
                a.id,
                a.signer.unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", artifact.display());
            ExitCode::from(1)
        }
    }
}
