//! The `podium` binary: `podium server` runs a whole single-node cluster (API server on an
//! embedded store, its controllers, and this machine's node registration).
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod config;
mod hostinfo;
mod node;
mod server;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "podium",
    version,
    about = "A Kubernetes-compatible pod engine",
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a server: the Kubernetes API on an embedded store, plus this node's agent.
    Server(Box<config::ServerArgs>),
    /// Manage images: pull, ls, rm, inspect, import, prune.
    Image(podium_image::cli::ImageArgs),
}

fn main() -> anyhow::Result<()> {
    let raw: Vec<String> = std::env::args().collect();
    // `podium shim ...` is the per-container shim: it must run before any thread exists,
    // because the runtime forks (see crates/runtime).
    if raw.get(1).map(String::as_str) == Some("shim") {
        std::process::exit(podium_runtime::shim_main(&raw[2..]));
    }
    // glibc gives every thread its own malloc arena and keeps freed memory there; two
    // arenas keep a busy server's RSS near its live data (measured: 138 MiB -> 45 MiB after
    // large LISTs, with no slower lists). See docs/benchmarks.md.
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let args = config::expand_config_file(raw)?;
    let cli = Cli::parse_from(args);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // libcgroups warns at every container about v1 controllers this kernel
                // lacks (hugetlb, net_cls, ...): four lines per pod, nothing to act on.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libcgroups=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Server(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(server::run(*args))
        }
        Command::Image(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let code = rt.block_on(podium_image::cli::run(args))?;
            std::process::exit(code);
        }
    }
}
