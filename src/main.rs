//! The `lever` binary: see [`lever::cli`].

fn main() -> std::process::ExitCode {
    lever::cli::main()
}
