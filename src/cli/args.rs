//! The command line's grammar: every command, its arguments and help (clap derive).

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "lever",
    version,
    about = "Policy compiler and runtime for LLM agent runs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `--format` of the commands that print a report: each command's help says what its
/// JSON holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Readable text on stdout.
    Human,
    /// JSON on stdout, for tools (the shape is in the command's help).
    Json,
}

/// `--format` of the commands that report diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiagFormat {
    /// Readable diagnostics on stderr.
    Human,
    /// A JSON array of diagnostics on stdout.
    Json,
    /// A SARIF 2.1.0 log on stdout, for code-scanning tools.
    Sarif,
}

/// `--engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    Interp,
    Jit,
    Auto,
}

impl From<EngineArg> for crate::runtime::EngineKind {
    fn from(e: EngineArg) -> Self {
        match e {
            EngineArg::Interp => crate::runtime::EngineKind::Interp,
            EngineArg::Jit => crate::runtime::EngineKind::Jit,
            EngineArg::Auto => crate::runtime::EngineKind::Auto,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse, resolve, type-check and analyze a policy set.
    #[command(
        after_help = "Examples:\n  lever check examples\n  lever check examples stdlib --format json\n  lever check policies --against main.lvc    # in a pull request\n\nExit: 0 clean or warnings only, 1 errors, 2 usage or I/O."
    )]
    Check {
        /// `.policy` files and directories (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// A previous artifact: warn (W0405) for every policy whose meaning changed since
        /// it but whose `version` did not.
        #[arg(long, value_name = "OLD.lvc")]
        against: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
        format: DiagFormat,
    },
    /// Compile a policy set to one content-hashed artifact; prints its id.
    #[command(
        after_help = "Example:\n  lever build examples -o policies.lvc\n\nPrints `blake3:<hex>`. Exit: 0 built, 1 errors in the policies, 2 usage or I/O."
    )]
    Build {
        /// `.policy` files and directories (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The artifact file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Sign the artifact with this secret key (`lever keygen`): the signature is
        /// written beside it, `OUTPUT.sig`.
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
        /// Format of diagnostics.
        #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
        format: DiagFormat,
    },
    /// Replay events through a policy set: one decision per line, evidence stored first.
    #[command(
        after_help = "Examples:\n  lever run examples --events examples/events/support.jsonl\n  lever build examples -o p.lvc && lever run p.lvc --events - < events.jsonl\n\nExit: 0 replayed (refused steps included), 1 a line was rejected, the policies have errors\nor the replay contradicts stored evidence, 2 usage or I/O."
    )]
    Run(RunArgs),
    /// Serve the runtime over HTTP: runs, steps and their decisions, evidence durable first.
    #[command(
        after_help = "Example:\n  lever serve --artifact policies.lvc --evidence postgres://localhost/lever --listen 0.0.0.0:8080\n\nStops on SIGTERM or Ctrl-C after the requests in flight have answered. See docs/server.md.\nExit: 0 stopped, 1 the artifact does not verify or the policies have errors, 2 usage or I/O."
    )]
    Serve(ServeArgs),
    /// Audit an evidence store: verify its hash chains, take a digest, show a run.
    #[command(
        after_help = "Examples:\n  lever evidence verify\n  lever evidence show --run support-42\n  lever evidence digest --evidence postgres://auditor@db/lever\n\nEach command's help says its exit codes."
    )]
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// Show an artifact: header, policies with their hashes, and disassembly.
    #[command(
        after_help = "Example:\n  lever inspect policies.lvc --format json\n\nExit: 0 verified, 1 the hash does not verify, 2 usage or I/O."
    )]
    Inspect {
        /// The artifact file.
        file: PathBuf,
        /// `human` (the header, sources, policies with every clause and override rule in
        /// their units, and the disassembly) or `json` (one object: `artifact`, `sources`,
        /// `policies` with their `limits`, `near` thresholds, actions and `overrides`,
        /// `monitors`, `aggregates`).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// With `jit`, also compile the program to native code and report what was compiled
        /// (every code block, or an error) and how long it took, per policy.
        #[arg(long, value_enum, default_value_t = EngineArg::Interp)]
        engine: EngineArg,
        /// Also recompile the embedded sources and require the artifact's own program and
        /// policy hashes (as `lever run` and `lever serve` do on load); exit 1 naming the
        /// first policy that differs.
        #[arg(long)]
        verify: bool,
        /// Print the exact text of one embedded source (a path as `lever inspect` lists
        /// it), and nothing else: the policy source a decision's policy hash stands for.
        #[arg(long, value_name = "PATH")]
        source: Option<String>,
    },
    /// What changed between two artifacts: policies added and removed, limits raised or
    /// lowered, thresholds and actions, scopes widened or narrowed, channels.
    #[command(
        after_help = "Example:\n  lever diff main.lvc pr.lvc\n\nExit: 0 no policy changes, 1 changes listed, 2 usage, I/O, or an artifact that does not verify."
    )]
    Diff {
        /// The artifact before.
        old: PathBuf,
        /// The artifact after.
        new: PathBuf,
        /// `human` (a line per change, `+`, `-` and `~` per policy) or `json` (one object:
        /// `from`, `to`, the policies `added`, `removed` and `changed` with their changes,
        /// and `channels`).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Lay out `.policy` files canonically, in place (comments kept, meaning unchanged).
    #[command(
        after_help = "Examples:\n  lever fmt policies\n  lever fmt --check policies     # in CI\n  lever fmt - < a.policy         # standard input to standard output\n\nExit: 0 formatted (with --check: nothing to change), 1 a file would change (--check) or does\nnot parse (left untouched), 2 usage or I/O."
    )]
    Fmt {
        /// `.policy` files and directories (searched recursively), or `-` for standard input.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Change nothing; list the files that are not formatted and exit 1 if any.
        #[arg(long)]
        check: bool,
    },
    /// A language server over stdio: diagnostics as you type, hover, go to definition,
    /// completion and formatting (docs/lsp.md).
    #[command(
        after_help = "Example (any editor that starts a language server by command):\n  lever lsp\n\nSpeaks LSP over stdin and stdout until the editor closes it. Exit: 0 closed, 2 I/O."
    )]
    Lsp,
    /// Make an Ed25519 key pair to sign artifacts with: `KEY` (secret, mode 0600) and
    /// `KEY.pub`, whose key id it prints.
    #[command(
        after_help = "Example:\n  lever keygen --out ci-signing\n  lever build policies -o policies.lvc --sign ci-signing\n  lever serve --artifact policies.lvc --trust ci-signing.pub\n\nExit: 0 made, 2 a file exists or cannot be written."
    )]
    Keygen {
        /// The secret key file to write (`.pub` is appended for the public one).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check an artifact's signature (`A.lvc.sig`, or `--signature`) against trusted keys.
    #[command(
        after_help = "Example:\n  lever verify-artifact policies.lvc --trust keys/\n\nPrints the signer's key id. Exit: 0 signed by a trusted key, 1 unsigned, signed by an\nunknown key, a signature that does not verify, or an artifact that does not, 2 usage or I/O."
    )]
    VerifyArtifact {
        /// The artifact file.
        artifact: PathBuf,
        /// Public key files (`lever keygen`'s `.pub`), or directories of them.
        #[arg(long, required = true, num_args = 1..)]
        trust: Vec<PathBuf>,
        /// The signature file (default: the artifact's path and `.sig`).
        #[arg(long)]
        signature: Option<PathBuf>,
    },
    /// Print a shell completion script for `lever`.
    #[command(
        after_help = "Examples:\n  lever completions bash > ~/.local/share/bash-completion/completions/lever\n  lever completions zsh > \"${fpath[1]}/_lever\"\n  lever completions fish > ~/.config/fish/completions/lever.fish\n\nExit: 0 printed, 2 usage."
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Run the policy tests (`test "name" { ... }`) of a policy set.
    #[command(
        after_help = "Example:\n  lever test examples --coverage\n\nExit: 0 every test passed, 1 a test failed or the policies have errors, 2 usage or I/O."
    )]
    Test {
        /// `.policy` files and directories (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// `human` (each test `ok` or `FAILED` with its failures, then a result line) or
        /// `json` (one object: `tests`, each with its name, place, `passed`, `failures`
        /// and the thresholds it `reached`, then the `passed` and `failed` counts).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Also report which thresholds and override rules the tests reached.
        #[arg(long)]
        coverage: bool,
    },
    /// Why a decision came out as it did: the policies that applied and why, the
    /// arbitration, each limit's value and zone, the overrides in force.
    #[command(
        after_help = "Example:\n  lever explain examples --events examples/events/support.jsonl --run support-42 --step 13\n\nThe events are replayed in memory; no evidence is written.\nExit: 0 explained, 1 no such event (or the policies have errors), 2 usage or I/O."
    )]
    Explain {
        /// An artifact (`.lvc`), or `.policy` files and directories to compile.
        #[arg(required = true)]
        source: Vec<PathBuf>,
        /// The events, one JSON object a line; `-` reads standard input.
        #[arg(long)]
        events: String,
        /// The run.
        #[arg(long)]
        run: String,
        /// The event's `seq` in the run, as its decision shows it (1 is the run start).
        #[arg(long)]
        step: u64,
        /// `human` (the decision, the policies that applied and why, the arbitration,
        /// each limit's value and zone, the overrides in force) or `json` (one object:
        /// `run_id`, `seq`, `ts`, `event`, `decision`, `run`, `policies`, `arbitration`,
        /// `limits`, `artifact`).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Time your own policies on your own events, on both engines: every event judged and
    /// its evidence records built, in memory (nothing written), ns per event.
    #[command(
        after_help = "Example:\n  lever bench policies --events last-week.jsonl --passes 7\n\nEach pass replays every event in a fresh runtime; the median pass is reported.\nExit: 0 measured, 1 the policies have errors, 2 usage or I/O."
    )]
    Bench {
        /// An artifact (`.lvc`), or `.policy` files and directories to compile.
        #[arg(required = true)]
        source: Vec<PathBuf>,
        /// The events, one JSON object a line; `-` reads standard input.
        #[arg(long)]
        events: String,
        /// Passes over the events per engine (the median is reported).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
        passes: u32,
        /// `human` (ns per event for each engine) or `json` (one object: `engines`, each
        /// with its fastest, median and slowest ns per event, and the counts of `events`,
        /// `steps` and `passes`).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Recompute every hash chain (or one run's); with `--digest`, also check that every
    /// record the digest covered is still stored unchanged.
    #[command(
        after_help = "Examples:\n  lever evidence verify\n  lever evidence verify --run r1 --digest blake3:...\n\nExit: 0 verified, 1 a record is altered, deleted, reordered or inserted (the first is named),\n2 usage or I/O."
    )]
    Verify {
        /// Only this run's chain.
        #[arg(long)]
        run: Option<String>,
        /// A digest printed earlier by `lever evidence digest`.
        #[arg(long)]
        digest: Option<String>,
        /// The store: `file:DIR` or `postgres://...`.
        #[arg(long, default_value = "file:./lever-evidence")]
        evidence: String,
    },
    /// Verify the store, record a checkpoint of every chain head, print its digest.
    #[command(
        after_help = "Example:\n  lever evidence digest --evidence postgres://localhost/lever\n\nPrints `blake3:<hex>`. Exit: 0 taken, 1 the store does not verify, 2 usage or I/O."
    )]
    Digest {
        /// The store: `file:DIR` or `postgres://...`.
        #[arg(long, default_value = "file:./lever-evidence")]
        evidence: String,
    },
    /// Create or upgrade a PostgreSQL store, as the schema's owner: the versioned
    /// migrations, and a writer role (INSERT and SELECT: what `lever serve` and `lever run`
    /// connect as) and an auditor role (SELECT) with their grants. Nothing else creates or
    /// alters the store.
    #[command(
        after_help = "Example:\n  lever evidence migrate --evidence 'postgres://owner@db/lever?schema=lever'\n  # then: lever serve --evidence 'postgres://lever_writer@db/lever?schema=lever' ...\n\nExit: 0 migrated (or up to date), 2 the database refused, or usage or I/O."
    )]
    Migrate {
        /// The store: `postgres://...` (`?schema=NAME`, default `lever`).
        #[arg(long)]
        evidence: String,
        /// The writer role to create or grant to (default `<schema>_writer`).
        #[arg(long)]
        writer_role: Option<String>,
        /// The auditor role to create or grant to (default `<schema>_auditor`).
        #[arg(long)]
        auditor_role: Option<String>,
        /// Apply the migrations only: create and grant no role.
        #[arg(long)]
        no_roles: bool,
    },
    /// Print a run's evidence, or the store chain's records (deploys, digests, alert
    /// deliveries, outages): one line per record, or the stored records as JSON lines.
    #[command(
        after_help = "Examples:\n  lever evidence show --run r1 --format json\n  lever evidence show --store --kind alert_delivery\n\nExit: 0 shown, 1 no such run (or no such record), 2 usage or I/O."
    )]
    Show {
        /// The run whose chain to show.
        #[arg(long, required_unless_present = "store", conflicts_with = "store")]
        run: Option<String>,
        /// Show the store chain: the records of no run.
        #[arg(long)]
        store: bool,
        /// Only records of this kind (`decision`, `deploy`, `digest`, `alert_delivery`, ...).
        #[arg(long)]
        kind: Option<String>,
        /// `human` (one line per record) or `json` (the stored records, one a line).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// The store: `file:DIR` or `postgres://...`.
        #[arg(long, default_value = "file:./lever-evidence")]
        evidence: String,
    },
    /// List what a store holds: every run with its state, decisions and last event time,
    /// and the store chain's records by kind.
    #[command(
        after_help = "Example:\n  lever evidence list --evidence postgres://auditor@db/lever --format json\n\nExit: 0 listed, 2 usage or I/O."
    )]
    List {
        /// `human` (a row per run, then the store chain's counts) or `json` (one object:
        /// `runs`, each with `run_id`, `state`, `decisions` and `last_ts`, and
        /// `store_chain`, records by kind).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// The store: `file:DIR` or `postgres://...`.
        #[arg(long, default_value = "file:./lever-evidence")]
        evidence: String,
    },
    /// Take a checkpoint: every record as a leaf of one Merkle tree (RFC 6962), its size
    /// and root printed as a signed note (C2SP tlog-checkpoint) and recorded in the store.
    #[command(
        after_help = "Example:\n  lever evidence checkpoint --sign log-key --origin example.com/lever > checkpoint.txt\n\nExit: 0 taken, 2 usage or I/O."
    )]
    Checkpoint {
        /// Sign the checkpoint with this secret key (`lever keygen`).
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
        /// The log's name, the note's first line.
        #[arg(long, default_value = "lever-evidence")]
        origin: String,
        /// The store: `file:DIR` or `postgres://...`.
        #[arg(long, default_value = "file:./lever-evidence")]
        evidence: String,
    },
    /// Export one record (a decision by default) with its inclusion proof against the
    /// newest checkpoint, as JSON: checked offline by `check-proof`.
    #[command(
        after_help = "Example:\n  lever evidence prove --run support-42 --seq 13 > decision-13.proof.json\n\nExit: 0 proved, 1 no such record, or none in a checkpoint yet, 2 usage or I/O."
    )]
    Prove {
        /// The run.
        #[arg(long)]
        run: String,
        /// The record's `seq` in the run (its decision's `seq`).
        #[arg(long)]
        seq: u64,
        /// The record's kind.
        #[arg(long, default_value = "decision")]
        kind: String,
        /// The store: `file:DIR` or `postgres://...`.
        #[arg(long, default_value = "file:./lever-evidence")]
        evidence: String,
    },
    /// Check a proof file offline, with no store: the checkpoint's signature by a trusted
    /// key, and the record's inclusion in its tree.
    #[command(
        after_help = "Example:\n  lever evidence check-proof decision-13.proof.json --trust log-key.pub\n\nExit: 0 proved, 1 the proof, the record or the checkpoint does not check, 2 usage or I/O."
    )]
    CheckProof {
        /// The proof file.
        file: PathBuf,
        /// Public keys (files, or directories of `.pub` files) the checkpoint may be signed by.
        #[arg(long, required = true, num_args = 1..)]
        trust: Vec<PathBuf>,
    },
    /// Prove that the store still holds an older checkpoint's tree and that a newer
    /// checkpoint extends it (a store rewritten between them cannot).
    #[command(
        after_help = "Example:\n  lever evidence consistency monday.txt friday.txt --trust log-key.pub\n\nExit: 0 consistent, 1 not (the first failure named), 2 usage or I/O."
    )]
    Consistency {
        /// The older checkpoint note.
        old: PathBuf,
        /// The newer checkpoint note.
        new: PathBuf,
        /// Public keys the notes must be signed by (without it, signatures are not checked).
        #[arg(long, num_args = 1..)]
        trust: Vec<PathBuf>,
        /// The store: `file:DIR` or `postgres://...`.
        #[arg(long, default_value = "file:./lever-evidence")]
        evidence: String,
    },
    /// Countersign a checkpoint as a witness: its note with one more signature line.
    #[command(
        after_help = "Example:\n  lever evidence consistency last-cosigned.txt checkpoint.txt --trust log-key.pub \\\n    && lever evidence cosign checkpoint.txt --sign witness-key > cosigned.txt\n\nExit: 0 cosigned, 2 usage or I/O."
    )]
    Cosign {
        /// The checkpoint note.
        note: PathBuf,
        /// The witness's secret key.
        #[arg(long, value_name = "KEY")]
        sign: PathBuf,
    },
    /// Print the counters of budgets across runs: what each key spent in each window,
    /// ended windows included.
    #[command(after_help = "Example:
  lever evidence budgets --evidence postgres://auditor@db/lever --format json

Exit: 0 shown, 2 usage or I/O.")]
    Budgets {
        /// `human` (a line per counter) or `json` (an object per counter, one a line).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// The store: `file:DIR` or `postgres://...`.
        #[arg(long, default_value = "file:./lever-evidence")]
        evidence: String,
    },
}

/// `lever serve`'s arguments. The binary hands them to the server: the command line and
/// the server never import each other.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The artifact (`.lvc`), or `.policy` files and directories to compile.
    #[arg(long, required = true, num_args = 1..)]
    pub artifact: Vec<PathBuf>,
    /// Where evidence is written: `file:DIR` or `postgres://...`.
    #[arg(long, default_value = "file:./lever-evidence")]
    pub evidence: String,
    /// The address to listen on (`127.0.0.1:0` picks a free port, printed on stderr).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The engine that evaluates the bytecode.
    #[arg(long, value_enum, default_value_t = EngineArg::Interp)]
    pub engine: EngineArg,
    /// TOML config: `[[tokens]]` with `token` or `token_env`, `actor`, `roles`, `admin`,
    /// and `[server]` settings (docs/security.md). Without it, override, approval and
    /// read requests are refused (401).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Accept an artifact (at start or deployed) with no policy, which governs nothing.
    #[arg(long)]
    pub allow_empty: bool,
    /// Accept only artifacts signed by these public keys (files, or directories of `.pub`
    /// files): at start, and on every deploy (`PUT /v1/artifacts` with its
    /// `Lever-Artifact-Signature`, or the watched file with its `.sig`). Adds to the
    /// config's `[trust] keys`.
    #[arg(long, num_args = 1..)]
    pub trust: Vec<PathBuf>,
}

/// `lever run`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// An artifact (`.lvc`), or `.policy` files and directories to compile.
    #[arg(required = true)]
    pub source: Vec<PathBuf>,
    /// The events, one JSON object a line; `-` reads standard input.
    #[arg(long)]
    pub events: String,
    /// Where evidence is written: `file:DIR` or `postgres://...` (`?schema=NAME`).
    #[arg(long, default_value = "file:./lever-evidence")]
    pub evidence: String,
    /// Input lines per group commit: their records are written and made durable
    /// together, then their decisions printed.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub group_commit: u32,
    /// Seconds to wait for an unavailable evidence store before exiting 2.
    #[arg(long, default_value_t = 30)]
    pub store_wait: u64,
    /// The engine: the portable bytecode interpreter, the Cranelift JIT, or the JIT
    /// where the host supports it.
    #[arg(long, value_enum, default_value_t = EngineArg::Interp)]
    pub engine: EngineArg,
    /// Accept a policy set (or an artifact, deployed ones included) with no policy,
    /// which governs nothing.
    #[arg(long)]
    pub allow_empty: bool,
    /// The longest event line read, in bytes; a longer one is rejected unread.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_line_bytes: usize,
    /// `table` (a row per decision: signals in words, amounts with their units) or
    /// `json` (one decision per line, as docs/decisions.md describes). Default: `table`
    /// when standard output is a terminal, `json` otherwise. A summary line goes to
    /// standard error either way.
    #[arg(long, value_enum)]
    pub format: Option<crate::cli::table::RunFormat>,
    /// Judge the events and print the decisions without opening the evidence store:
    /// nothing is written, and nothing is compared with stored evidence.
    #[arg(long)]
    pub dry_run: bool,
    /// Accept only artifacts signed by these public keys (files, or directories of `.pub`
    /// files): the one given, and every one a `deploy` event names.
    #[arg(long, num_args = 1..)]
    pub trust: Vec<PathBuf>,
}
