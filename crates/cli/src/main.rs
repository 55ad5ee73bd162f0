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
    Server(config::ServerArgs),
}

fn main() -> anyhow::Result<()> {
    let args = config::expand_config_file(std::env::args().collect())?;
    let cli = Cli::parse_from(args);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Server(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(server::run(args))
        }
    }
}
