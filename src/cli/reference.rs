//! The command-line reference as Markdown, generated from the clap definitions so that it
//! cannot drift from them: `docs/cli-reference.md` is this text (a test compares them).

use crate::cli::Cli;
use clap::CommandFactory;

/// Every command and subcommand: its about text, usage, arguments and after-help.
pub fn markdown() -> String {
    let mut root = Cli::command();
    root.build();
    let mut out = String::from(
        "# CLI reference\n\nGenerated from the command definitions (`lever <command> --help` prints the same). \
`docs/cli.md` explains each command with examples.\n",
    );
    for sub in root.get_subcommands().filter(|s| s.get_name() != "help") {
        command(&mut out, sub, "lever");
    }
    out
}

fn command(out: &mut String, cmd: &clap::Command, parent: &str) {
    let name = format!("{parent} {}", cmd.get_name());
    if cmd.has_subcommands() {
        out.push_str(&format!("\n## `{name}`\n\n"));
        if let Some(about) = cmd.get_about() {
            out.push_str(&format!("{}\n", sentence(&about.to_string())));
        }
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            command(out, sub, &name);
        }
        return;
    }
    out.push_str(&format!("\n## `{name}`\n\n"));
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        out.push_str(&format!("{}\n\n", sentence(&about.to_string())));
    }
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ");
    out.push_str(&format!("```text\n{usage}\n```\n\n"));
    let args: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_id() != "help")
        .collect();
    if !args.is_empty() {
        out.push_str("| argument | meaning |\n|---|---|\n");
        for a in args {
            let shown = match (a.get_long(), a.get_short()) {
                (Some(long), Some(short)) => format!("`-{short}, --{long}`"),
                (Some(long), None) => format!("`--{long}`"),
                _ => format!("`{}`", a.get_id().as_str().to_uppercase()),
            };
            let mut help = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| h.to_string().replace('\n', " "))
                .unwrap_or_default();
            if !help.is_empty() {
                help = sentence(&help);
            }
            let values: Vec<String> = a
                .get_possible_values()
                .iter()
                .map(|v| format!("`{}`", v.get_name()))
                .collect();
            if !values.is_empty() {
                help.push_str(&format!(" One of {}.", values.join(", ")));
            }
            let defaults: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if !defaults.is_empty() && !a.is_required_set() {
                help.push_str(&format!(" Default: `{}`.", defaults.join(" ")));
            }
            out.push_str(&format!("| {shown} | {} |\n", help.replace('|', "\\|")));
        }
        out.push('\n');
    }
    if let Some(after) = cmd.get_after_help() {
        out.push_str(&format!("```text\n{}\n```\n", after.to_string().trim_end()));
    }
}

/// Text ending in a full stop.
fn sentence(text: &str) -> String {
    let text = text.trim_end();
    if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    }
}
