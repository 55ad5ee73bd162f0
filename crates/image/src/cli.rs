//! `podium image pull|ls|rm|inspect|import|prune`: the image store from the command
//! line. The `podium` binary embeds [`ImageArgs`] as a subcommand and calls [`run`].
//!
//! `pull` draws one progress line per layer on a terminal (redrawn in place) and prints
//! plain lines per finished layer otherwise. Credentials: `--username` with
//! `--password-stdin`, or `--docker-config FILE` (a `.dockerconfigjson`-shaped file,
//! matched to the image as kubelet matches pull secrets); `registries.yaml` in the data
//! dir applies as for the node agent.

use crate::credentials::{Credential, Keyring};
use crate::gc;
use crate::import::import_path;
use crate::metadata::ImageRecord;
use crate::pull::{ImageService, LayerProgress, LayerState, ProgressFn};
use crate::reference::{PullPolicy, Reference};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct ImageArgs {
    /// The data dir whose image store to use.
    #[arg(long, default_value = "/var/lib/podium")]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum ImageCommand {
    /// Pull an image from its registry (or a configured mirror).
    Pull {
        image: String,
        /// Registry user name (password from --password-stdin).
        #[arg(long)]
        username: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// A docker config JSON file ({"auths": {...}}) to take credentials from.
        #[arg(long)]
        docker_config: Option<PathBuf>,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        /// Only image IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove images (by name or ID) and the blobs and snapshots only they used.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show an image's record as JSON.
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Load a docker save archive, an OCI archive or an OCI layout directory.
    Import {
        path: PathBuf,
        /// Name for images that carry none (or only a tag).
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete blobs and snapshots no image references.
    Prune,
}

/// Parses `args` (after `podium image`) and runs it on `data_dir`.
pub async fn run_image_cli(data_dir: &Path, args: &[String]) -> anyhow::Result<i32> {
    #[derive(Parser)]
    #[command(name = "podium image")]
    struct Wrapper {
        #[command(subcommand)]
        command: ImageCommand,
    }
    let mut argv = vec!["podium image".to_string()];
    argv.extend(args.iter().cloned());
    let w = match Wrapper::try_parse_from(argv) {
        Ok(w) => w,
        Err(e) => {
            let _ = e.print();
            return Ok(if e.use_stderr() { 2 } else { 0 });
        }
    };
    run(ImageArgs {
        data_dir: data_dir.to_path_buf(),
        command: w.command,
    })
    .await
}

/// Runs one `podium image` command; the exit code is 0 on success.
pub async fn run(args: ImageArgs) -> anyhow::Result<i32> {
    let svc = ImageService::open(&args.data_dir)
        .with_context(|| format!("opening the image store in {}", args.data_dir.display()))?;
    let mut out = std::io::stdout().lock();
    match args.command {
        ImageCommand::Pull {
            image,
            username,
            password_stdin,
            docker_config,
        } => {
            let reference = Reference::parse(&image)?;
            let mut creds = Vec::new();
            if let Some(path) = docker_config {
                let data =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let k = Keyring::from_dockerconfigjson(&path.display().to_string(), &data)?;
                creds.extend(k.lookup(&reference.name()));
            }
            if let Some(user) = username {
                let mut password = String::new();
                if password_stdin {
                    std::io::stdin().read_to_string(&mut password)?;
                }
                creds.insert(
                    0,
                    Credential::new(user, password.trim_end_matches(['\r', '\n'])),
                );
            }
            let progress = Progress::new(std::io::stderr().is_terminal());
            let p = progress.clone();
            let cb: ProgressFn = Arc::new(move |lp: &LayerProgress| p.update(lp));
            match svc
                .ensure(&image, PullPolicy::Always, &creds, Some(cb))
                .await
            {
                Ok(e) => {
                    progress.finish();
                    if let Some(s) = &e.pulled {
                        writeln!(
                            out,
                            "Pulled {} ({} layers, {} bytes downloaded in {:.1}s)",
                            e.handle.reference,
                            s.layers_fetched,
                            s.bytes_fetched,
                            s.duration.as_secs_f64()
                        )?;
                    }
                    writeln!(out, "{}", e.handle.image_ref)?;
                    Ok(0)
                }
                Err(err) => {
                    progress.finish();
                    eprintln!("error: {err} ({})", err.reason());
                    Ok(1)
                }
            }
        }
        ImageCommand::Ls { quiet } => {
            let mut images = svc.metadata().list();
            images.sort_by_key(|r| std::cmp::Reverse(r.created));
            if quiet {
                for r in images {
                    writeln!(out, "{}", r.id)?;
                }
                return Ok(0);
            }
            writeln!(out, "{:<60} {:<14} {:>12}", "IMAGE", "ID", "SIZE")?;
            for r in images {
                let names = if r.tags.is_empty() {
                    vec!["<none>".to_string()]
                } else {
                    r.tags.clone()
                };
                for n in names {
                    writeln!(
                        out,
                        "{:<60} {:<14} {:>12}",
                        n,
                        &r.id.hex()[..12],
                        human(r.size)
                    )?;
                }
            }
            Ok(0)
        }
        ImageCommand::Inspect { images } => {
            let mut found = Vec::new();
            let mut code = 0;
            for i in &images {
                match find(&svc, i) {
                    Some(r) => found.push(r),
                    None => {
                        eprintln!("error: no such image: {i}");
                        code = 1;
                    }
                }
            }
            serde_json::to_writer_pretty(&mut out, &found)?;
            writeln!(out)?;
            Ok(code)
        }
        ImageCommand::Rm { images } => {
            let mut code = 0;
            for i in &images {
                // A tag reference untags; the image goes when it has no name left. A
                // digest reference or an ID removes the image.
                let tag = Reference::parse(i)
                    .ok()
                    .filter(|r| r.digest().is_none())
                    .map(|r| r.to_string());
                let untagged = match &tag {
                    Some(t) => svc.metadata().untag(t)?,
                    None => None,
                };
                match untagged {
                    Some(r) if !r.tags.is_empty() => writeln!(out, "Untagged: {i}")?,
                    Some(r) => {
                        svc.metadata().remove(&r.id)?;
                        writeln!(out, "Untagged: {i}\nDeleted: {}", r.id)?;
                    }
                    None => match find(&svc, i) {
                        Some(r) => {
                            svc.metadata().remove(&r.id)?;
                            writeln!(out, "Deleted: {}", r.id)?;
                        }
                        None => {
                            eprintln!("error: no such image: {i}");
                            code = 1;
                        }
                    },
                }
            }
            let p = gc::prune(&svc, Duration::ZERO)?;
            if p.removed_blobs + p.removed_snapshots > 0 {
                writeln!(
                    out,
                    "Freed {} ({} blobs, {} snapshots)",
                    human(p.freed_bytes),
                    p.removed_blobs,
                    p.removed_snapshots
                )?;
            }
            Ok(code)
        }
        ImageCommand::Import { path, name } => {
            let svc = Arc::new(svc);
            let s = svc.clone();
            let recs = tokio::task::spawn_blocking(move || import_path(&s, &path, name.as_deref()))
                .await??;
            for r in recs {
                let n = r.tags.first().cloned().unwrap_or_else(|| "<none>".into());
                writeln!(out, "Imported {n} {}", r.id)?;
            }
            Ok(0)
        }
        ImageCommand::Prune => {
            let p = gc::prune(&svc, Duration::ZERO)?;
            writeln!(
                out,
                "Freed {} ({} blobs, {} snapshots)",
                human(p.freed_bytes),
                p.removed_blobs,
                p.removed_snapshots
            )?;
            Ok(0)
        }
    }
}

/// By name (tag or digest reference) or by ID (prefix).
fn find(svc: &ImageService, s: &str) -> Option<ImageRecord> {
    if let Ok(r) = Reference::parse(s) {
        if let Some(rec) = svc.metadata().lookup(&r) {
            return Some(rec);
        }
    }
    svc.metadata().get_by_id(s)
}

fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", units[u])
    }
}

/// Per-layer progress: redrawn lines on a terminal, one line per finished layer
/// otherwise.
#[derive(Clone)]
struct Progress {
    tty: bool,
    state: Arc<Mutex<ProgressState>>,
}

#[derive(Default)]
struct ProgressState {
    layers: BTreeMap<String, (u64, u64, LayerState)>,
    order: Vec<String>,
    drawn: usize,
}

impl Progress {
    fn new(tty: bool) -> Progress {
        Progress {
            tty,
            state: Arc::default(),
        }
    }

    fn update(&self, p: &LayerProgress) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = p.digest.hex()[..12].to_string();
        if !st.layers.contains_key(&key) {
            st.order.push(key.clone());
        }
        let prev = st.layers.insert(key.clone(), (p.done, p.total, p.state));
        let mut err = std::io::stderr().lock();
        if self.tty {
            if st.drawn > 0 {
                let _ = write!(err, "\x1b[{}A", st.drawn);
            }
            for k in &st.order {
                if let Some((done, total, state)) = st.layers.get(k) {
                    let what = match state {
                        LayerState::Present => "already present".to_string(),
                        LayerState::Downloading => {
                            format!("downloading {:>9} / {:<9}", human(*done), human(*total))
                        }
                        LayerState::Downloaded => format!("downloaded {}", human(*total)),
                        LayerState::Unpacked => "unpacked".to_string(),
                    };
                    let _ = writeln!(err, "\x1b[2K{k}: {what}");
                }
            }
            st.drawn = st.order.len();
        } else if prev.map(|p| p.2) != Some(p.state) && p.state != LayerState::Downloading {
            let what = match p.state {
                LayerState::Present => "already present",
                LayerState::Downloaded => "downloaded",
                LayerState::Unpacked => "unpacked",
                LayerState::Downloading => "downloading",
            };
            let _ = writeln!(err, "{key}: {what} ({} bytes)", p.total);
        }
    }

    fn finish(&self) {
        let _ = std::io::stderr().flush();
    }
}
