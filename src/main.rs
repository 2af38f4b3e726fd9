//! The `lever` binary: see [`lever::cli`].

/// mimalloc: the server allocates and frees many small JSON values across threads (request
/// handlers build records, the evidence writer frees them), where glibc's allocator spent
/// about a quarter of the server's time (`docs/server.md`, "Throughput").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    lever::cli::main()
}
