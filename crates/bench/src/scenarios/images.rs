//! The image pull benchmark (issue 3): pull + unpack of a ~50 MB multi-layer image from a
//! local registry, Podium side by side with its peers in the same run.
//!
//! Set-up (untimed): Debian's `docker-registry` (CNCF distribution) on 127.0.0.1 with
//! filesystem storage in a temporary dir; an image of five gzip layers built here (the
//! static busybox, large random files, many small random files, compressible text, and a
//! small top layer with whiteouts), pushed as a Docker schema 2 image with Podium's own
//! registry client.
//!
//! Timed, pair by pair with the tool order rotated every repeat, each a separate process
//! as a user would run it:
//! - `podium image --data-dir <fresh> pull` (cold: download, verify, unpack into
//!   snapshots), then the same again on the now warm data dir (`Always`: the digest is
//!   unchanged, so nothing should be fetched);
//! - `podman pull --tls-verify=false` with a fresh `--root`/`--runroot` (cold), then
//!   again (warm; `podman pull` also resolves the tag every time);
//! - `skopeo copy docker://… oci:<dir>` + `umoci unpack` into a fresh dir (cold only).
//!
//! Each tool's empty store is initialised untimed first (`podium image ls`, `podman
//! images`), so a cold pull measures the pull, not first-use set-up. Every timed command
//! starts after a `sync(2)`, so one tool's write-back is not billed
//! to the next. Blob GETs per pull are counted in the registry's access log, which also
//! shows that a warm pull fetched nothing. No targets: issue 3 asks only for the ratio.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use podium_image::client::{Session, MEDIA_DOCKER_MANIFEST};
use podium_image::{Digest, RegistriesConfig};
use serde::Serialize;

use super::peer::{remove_dir, show, timed, version, which, PodmanConf};
use super::testimage::{read_busybox, TarLayer};
use crate::report::Machine;
use crate::stats::percentile;

const LAYER_MEDIA: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const CONFIG_MEDIA: &str = "application/vnd.docker.container.image.v1+json";
const REPO: &str = "bench/big";
const TAG: &str = "1";

/// Command-line settings of the image benchmark (flattened into `podium-bench`'s own).
#[derive(clap::Args, Debug, Clone)]
pub struct ImageBenchArgs {
    /// Repeats of each timed pull in the `images` scenario.
    #[arg(long, default_value_t = 7)]
    pub image_repeats: usize,
    /// Approximate compressed size of the benchmark image, in MB (10^6 bytes).
    #[arg(long, default_value_t = 50)]
    pub image_mb: u64,
    /// Peers measured beside Podium (comma-separated: podman, skopeo; `none` for none).
    #[arg(long, value_delimiter = ',', default_value = "podman,skopeo")]
    pub image_peers: Vec<String>,
    /// Storage driver for the podman peer (image and pod benchmarks). overlay unpacks
    /// each layer once into its own directory, as Podium's snapshots do; vfs copies every
    /// parent layer again.
    #[arg(long, default_value = "overlay")]
    pub podman_storage_driver: String,
    /// The registry binary (Debian's docker-registry).
    #[arg(long, default_value = "/usr/bin/docker-registry")]
    pub registry_bin: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageBenchError {
    #[error("{tool} is not installed ({path}): apt-get install {package}")]
    Missing {
        tool: &'static str,
        path: String,
        package: &'static str,
    },
    #[error("the registry did not listen on 127.0.0.1:{port} within {waited:?} (log: {log})")]
    RegistryNotReady {
        port: u16,
        waited: Duration,
        log: String,
    },
    #[error("{tool}: {detail}")]
    Unexpected { tool: String, detail: String },
}

/// One layer of the benchmark image.
#[derive(Debug, Clone, Serialize)]
pub struct LayerFacts {
    pub what: String,
    pub files: usize,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
}

/// What was pushed.
#[derive(Debug, Clone, Serialize)]
pub struct ImageFacts {
    pub reference: String,
    pub manifest_digest: String,
    pub layers: Vec<LayerFacts>,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
}

/// One measured operation of one tool, over every repeat.
#[derive(Debug, Clone, Serialize)]
pub struct ToolResult {
    pub name: String,
    pub command: String,
    pub samples_ms: Vec<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    /// Median user+system CPU of the command and its children.
    pub cpu_ms_p50: f64,
    /// Median blob GETs the registry served during one such pull.
    pub blob_gets_p50: f64,
    /// Median disk use of the tool's storage after the pull (allocated blocks).
    pub disk_bytes_p50: Option<f64>,
    /// Median of named parts (e.g. skopeo vs umoci), in ms.
    pub parts_ms_p50: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImagesReport {
    pub date: String,
    pub machine: Machine,
    pub repeats: usize,
    pub image: ImageFacts,
    pub tools: Vec<ToolResult>,
    /// Podium's median over the peer's median, same run.
    pub ratios: BTreeMap<String, f64>,
    /// Tool versions and peers that were skipped, with why.
    pub notes: Vec<String>,
}

/// Raw samples of one operation, summarised into a [`ToolResult`].
#[derive(Default)]
struct Samples {
    command: String,
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
    blob_gets: Vec<f64>,
    disk: Vec<f64>,
    parts: BTreeMap<String, Vec<f64>>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[f64]) -> f64 {
    crate::stats::median(v).unwrap_or(0.0)
}

impl Samples {
    fn result(&self, name: &str) -> ToolResult {
        let mut sorted = self.wall.clone();
        sorted.sort_unstable();
        let cpu: Vec<f64> = self.cpu.iter().map(|d| ms(*d)).collect();
        ToolResult {
            name: name.to_string(),
            command: self.command.clone(),
            samples_ms: self.wall.iter().map(|d| ms(*d)).collect(),
            p50_ms: percentile(&sorted, 50.0).map(ms).unwrap_or(0.0),
            p99_ms: percentile(&sorted, 99.0).map(ms).unwrap_or(0.0),
            min_ms: sorted.first().copied().map(ms).unwrap_or(0.0),
            cpu_ms_p50: median(&cpu),
            blob_gets_p50: median(&self.blob_gets),
            disk_bytes_p50: (!self.disk.is_empty()).then(|| median(&self.disk)),
            parts_ms_p50: self
                .parts
                .iter()
                .map(|(k, v)| (k.clone(), median(v)))
                .collect(),
        }
    }
}

/// Deterministic incompressible bytes (splitmix64); gzip cannot shrink them.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// Log-like text that gzip shrinks about 3-5 times (a small vocabulary plus random ids).
fn text(rng: &mut Rng, n: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "pod",
        "container",
        "image",
        "layer",
        "snapshot",
        "registry",
        "manifest",
        "digest",
        "started",
        "pulled",
        "unpacked",
        "ready",
        "node",
        "volume",
        "network",
        "probe",
    ];
    let mut out = Vec::with_capacity(n + 128);
    let mut line = 0u64;
    while out.len() < n {
        let r = rng.next();
        let w = |i: u32| WORDS[((r >> (i * 4)) & 15) as usize];
        let _ = writeln!(
            out,
            "{line:08} level=info component={} msg=\"{} {} {}\" id={:016x}",
            w(0),
            w(1),
            w(2),
            w(3),
            rng.next()
        );
        line += 1;
    }
    out.truncate(n);
    out
}

/// A built layer: (what, files, tar, gzip).
struct Built {
    what: String,
    files: usize,
    tar: Vec<u8>,
    gz: Vec<u8>,
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    // Docker pushes gzip at the default level.
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 2),
        flate2::Compression::default(),
    );
    e.write_all(data)?;
    e.finish()
}

/// Builds the five layers so that their gzip sizes add up to about `target` bytes.
fn build_layers(target: u64) -> anyhow::Result<Vec<Built>> {
    const MIB: usize = 1 << 20;
    let busybox = read_busybox()?;
    let mut rng = Rng(0x5e_ed0f_90d1);
    let rest = target.saturating_sub(busybox.len() as u64 / 2).max(4 << 20) as usize;

    let l1 = TarLayer::busybox(
        &["bin/", "etc/", "tmp/", "usr/", "usr/share/", "opt/"],
        &busybox,
        &[
            "sh", "ls", "cat", "echo", "sleep", "cp", "mv", "rm", "mkdir", "ps", "grep", "sed",
            "awk", "tar", "gzip", "wget", "env", "true", "false", "id",
        ],
    )?;

    // Half of the rest: large random files (download- and write-bound).
    let mut l2 = TarLayer::new();
    l2.dir("opt/random/")?;
    let big = 2 * MIB;
    for i in 0..(rest / 2).div_ceil(big) {
        l2.file(
            &format!("opt/random/blob-{i:02}.bin"),
            0o644,
            &rng.bytes(big),
        )?;
    }

    // A fifth: 4 KiB random files, 100 to a directory (metadata-bound).
    let mut l3 = TarLayer::new();
    l3.dir("usr/share/small/")?;
    let small = 4096;
    let n_small = (rest / 5).div_ceil(small);
    for i in 0..n_small {
        if i % 100 == 0 {
            l3.dir(&format!("usr/share/small/d{:03}/", i / 100))?;
        }
        l3.file(
            &format!("usr/share/small/d{:03}/f{i:05}", i / 100),
            0o644,
            &rng.bytes(small),
        )?;
    }

    // The remaining 30 % compressed: text, sized from the ratio of a 1 MiB sample.
    let sample = text(&mut rng, MIB);
    let ratio = gzip(&sample)?.len() as f64 / MIB as f64;
    let text_bytes = ((rest as f64 * 0.3) / ratio.max(0.01)) as usize;
    let mut l4 = TarLayer::new();
    l4.dir("usr/share/text/")?;
    for i in 0..text_bytes.div_ceil(MIB) {
        l4.file(
            &format!("usr/share/text/log-{i:03}.txt"),
            0o644,
            &text(&mut rng, MIB),
        )?;
    }

    // The top layer: small files and whiteouts of files below.
    let mut l5 = TarLayer::new();
    l5.file("etc/hostname", 0o644, b"podium-bench\n")?;
    l5.file(
        "etc/bench-image",
        0o644,
        b"podium-bench image pull benchmark\n",
    )?;
    l5.dir("opt/random/")?;
    l5.file("opt/random/.wh.blob-00.bin", 0o644, b"")?;
    l5.dir("usr/")?;
    l5.dir("usr/share/")?;
    l5.dir("usr/share/small/")?;
    l5.dir("usr/share/small/d000/")?;
    l5.file("usr/share/small/d000/.wh.f00000", 0o644, b"")?;

    let parts = [
        (l1, "busybox-static + applet links"),
        (l2, "large random files (2 MiB)"),
        (l3, "small random files (4 KiB)"),
        (l4, "compressible text (1 MiB files)"),
        (l5, "top layer: small files, 2 whiteouts"),
    ];
    let mut tars = Vec::new();
    for (l, what) in parts {
        let (tar, files) = l.finish()?;
        tars.push((what.to_string(), files, tar));
    }
    // Compress on both cores: level-6 gzip of ~50 MB takes a few seconds.
    let gz: Vec<std::io::Result<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = tars
            .iter()
            .map(|(_, _, t)| s.spawn(move || gzip(t)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("gzip thread panicked")))
            })
            .collect()
    });
    tars.into_iter()
        .zip(gz)
        .map(|((what, files, tar), gz)| {
            Ok(Built {
                what,
                files,
                tar,
                gz: gz?,
            })
        })
        .collect()
}

/// Pushes the image as a Docker schema 2 manifest; returns its facts.
async fn push(host: &str, layers: &[Built]) -> anyhow::Result<ImageFacts> {
    let cfg = RegistriesConfig::default();
    let ep = cfg
        .endpoints(host, REPO)
        .into_iter()
        .next()
        .context("no endpoint for the local registry")?;
    let s = Session::new(&cfg, ep, None, true)?;
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| Digest::of_bytes(&l.tar).to_string())
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|l| serde_json::json!({"created_by": l.what})).collect::<Vec<_>>(),
    });
    let config = serde_json::to_vec(&config)?;
    let cd = Digest::of_bytes(&config);
    s.push_blob(&cd, Bytes::from(config.clone())).await?;
    let mut descs = Vec::new();
    for l in layers {
        let d = Digest::of_bytes(&l.gz);
        s.push_blob(&d, Bytes::from(l.gz.clone())).await?;
        descs.push(serde_json::json!({"mediaType": LAYER_MEDIA, "size": l.gz.len(), "digest": d.to_string()}));
    }
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": MEDIA_DOCKER_MANIFEST,
        "config": {"mediaType": CONFIG_MEDIA, "size": config.len(), "digest": cd.to_string()},
        "layers": descs,
    });
    let mb = serde_json::to_vec(&m)?;
    s.push_manifest(TAG, MEDIA_DOCKER_MANIFEST, Bytes::from(mb.clone()))
        .await?;
    let facts: Vec<LayerFacts> = layers
        .iter()
        .map(|l| LayerFacts {
            what: l.what.clone(),
            files: l.files,
            compressed_bytes: l.gz.len() as u64,
            uncompressed_bytes: l.tar.len() as u64,
        })
        .collect();
    Ok(ImageFacts {
        reference: format!("{host}/{REPO}:{TAG}"),
        manifest_digest: Digest::of_bytes(&mb).to_string(),
        compressed_bytes: facts.iter().map(|l| l.compressed_bytes).sum(),
        uncompressed_bytes: facts.iter().map(|l| l.uncompressed_bytes).sum(),
        layers: facts,
    })
}

/// The local registry; killed on drop.
struct Registry {
    _child: tokio::process::Child,
    port: u16,
    log: PathBuf,
}

impl Registry {
    async fn start(bin: &Path, dir: &Path) -> anyhow::Result<Registry> {
        if !bin.exists() {
            return Err(ImageBenchError::Missing {
                tool: "the registry",
                path: bin.display().to_string(),
                package: "docker-registry",
            }
            .into());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let cfg = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        );
        let cfg_path = dir.join("config.yml");
        std::fs::write(&cfg_path, cfg)?;
        let log = dir.join("registry.log");
        let lf = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(bin)
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(lf.try_clone()?))
            .stderr(Stdio::from(lf))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let waited = Duration::from_secs(20);
        let deadline = Instant::now() + waited;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err(ImageBenchError::RegistryNotReady {
                    port,
                    waited,
                    log: log.display().to_string(),
                }
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Registry {
            _child: child,
            port,
            log,
        })
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Blob GETs in the access log so far.
    fn blob_gets(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .count()
    }
}

/// Allocated bytes under `dir` (hard links counted once; symlinks not followed).
pub fn disk_usage(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if seen.insert((m.dev(), m.ino())) {
                total += m.blocks() * 512;
            }
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// `podium image pull`'s "(N layers, M bytes downloaded" figures.
pub fn parse_podium_pulled(stdout: &str) -> Option<(u64, u64)> {
    let line = stdout.lines().find(|l| l.starts_with("Pulled "))?;
    let inner = line.split_once(" (")?.1;
    let mut it = inner.split([' ', ',']).filter(|s| !s.is_empty());
    let layers = it.next()?.parse().ok()?;
    if it.next()? != "layers" {
        return None;
    }
    let bytes = it.next()?.parse().ok()?;
    Some((layers, bytes))
}

/// `cmd` with its `pull …` tail replaced by `sub` (same global options).
fn before_pull(cmd: &[String], sub: &str) -> Vec<String> {
    let at = cmd.iter().position(|a| a == "pull").unwrap_or(cmd.len());
    let mut out = cmd[..at].to_vec();
    out.push(sub.to_string());
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Podium,
    Podman,
    SkopeoUmoci,
}

struct Bench<'a> {
    reg: &'a Registry,
    image: String,
    podium_bin: PathBuf,
    scratch: PathBuf,
    /// The run's own podman configuration, so that no host configuration (or its
    /// absence) changes what the peers do.
    podman: PodmanConf,
    layers: u64,
}

impl Bench<'_> {
    fn podium_cmd(&self, data: &Path) -> Vec<String> {
        vec![
            self.podium_bin.display().to_string(),
            "image".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "pull".into(),
            self.image.clone(),
        ]
    }

    fn podman_cmd(&self, dir: &Path) -> Vec<String> {
        let mut cmd = self.podman.global_args(&dir.join("root"), &dir.join("run"));
        cmd.extend([
            "pull".into(),
            "--quiet".into(),
            "--tls-verify=false".into(),
            "--signature-policy".into(),
            self.podman.policy().display().to_string(),
            self.image.clone(),
        ]);
        cmd
    }

    fn podman_env(&self, dir: &Path) -> Vec<(&'static str, String)> {
        let mut env = self.podman.env();
        // Its temporary blob copies go to the run's own dir, cleaned with it.
        env.push(("TMPDIR", dir.join("tmp").display().to_string()));
        env
    }

    /// One cold pull and, for Podium and podman, one warm re-pull, into fresh dirs.
    async fn repeat(
        &self,
        tool: Tool,
        i: usize,
        cold: &mut Samples,
        warm: &mut Samples,
    ) -> anyhow::Result<()> {
        let dir = self.scratch.join(format!("{tool:?}-{i}").to_lowercase());
        std::fs::create_dir_all(&dir)?;
        // Kept until the end of the benchmark: deleting thousands of files between
        // pulls makes ext4's inode allocator skip the recently deleted inodes
        // (`recently_deleted` in profiles), which billed the next pull for it.
        self.repeat_in(tool, &dir, cold, warm).await
    }

    async fn repeat_in(
        &self,
        tool: Tool,
        dir: &Path,
        cold: &mut Samples,
        warm: &mut Samples,
    ) -> anyhow::Result<()> {
        let unexpected = |detail: String| ImageBenchError::Unexpected {
            tool: format!("{tool:?}"),
            detail,
        };
        match tool {
            Tool::Podium => {
                let data = dir.join("data");
                let cmd = self.podium_cmd(&data);
                // Untimed: create the empty image store, as on a node that runs.
                timed(&before_pull(&cmd, "ls"), &[]).await?;
                for (k, s) in [(0, &mut *cold), (1, &mut *warm)] {
                    let g0 = self.reg.blob_gets();
                    let r = timed(&cmd, &[]).await?;
                    let gets = self.reg.blob_gets() - g0;
                    let (layers, _) = parse_podium_pulled(&r.stdout).ok_or_else(|| {
                        unexpected(format!("no `Pulled` line in: {}", r.stdout.trim()))
                    })?;
                    // Cold: every layer fetched. Warm: the digest is unchanged, so none.
                    let want = if k == 0 { self.layers } else { 0 };
                    if layers != want {
                        return Err(unexpected(format!(
                            "fetched {layers} layers, expected {want}: {}",
                            r.stdout.trim()
                        ))
                        .into());
                    }
                    s.command = show(&cmd);
                    s.wall.push(r.wall);
                    s.cpu.push(r.cpu);
                    s.blob_gets.push(gets as f64);
                    s.disk.push(disk_usage(&data) as f64);
                }
            }
            Tool::Podman => {
                std::fs::create_dir_all(dir.join("tmp"))?;
                let cmd = self.podman_cmd(dir);
                let env = self.podman_env(dir);
                // Untimed: initialise the empty store (podman's overlay checks run on
                // first use), as on a node whose podman has run before.
                timed(&before_pull(&cmd, "images"), &env).await?;
                for s in [&mut *cold, &mut *warm] {
                    let g0 = self.reg.blob_gets();
                    let r = timed(&cmd, &env).await?;
                    let gets = self.reg.blob_gets() - g0;
                    if !r.stdout.trim().starts_with(|c: char| c.is_ascii_hexdigit()) {
                        return Err(unexpected(format!(
                            "no image ID printed: {}",
                            r.stdout.trim()
                        ))
                        .into());
                    }
                    s.command = show(&cmd);
                    s.wall.push(r.wall);
                    s.cpu.push(r.cpu);
                    s.blob_gets.push(gets as f64);
                    s.disk.push(disk_usage(&dir.join("root")) as f64);
                }
            }
            Tool::SkopeoUmoci => {
                let layout = format!("oci:{}:big", dir.join("layout").display());
                let policy = self.podman.policy().display().to_string();
                let copy: Vec<String> = [
                    "skopeo",
                    "--policy",
                    &policy,
                    "copy",
                    "--quiet",
                    "--src-tls-verify=false",
                    &format!("docker://{}", self.image),
                    &layout,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                let unpack: Vec<String> = vec![
                    "umoci".into(),
                    "unpack".into(),
                    "--image".into(),
                    format!("{}:big", dir.join("layout").display()),
                    dir.join("bundle").display().to_string(),
                ];
                let g0 = self.reg.blob_gets();
                let a = timed(&copy, &self.podman.env()).await?;
                let gets = self.reg.blob_gets() - g0;
                let b = timed(&unpack, &[]).await?;
                if !dir.join("bundle/rootfs/bin/busybox").exists() {
                    return Err(unexpected("umoci left no rootfs/bin/busybox".into()).into());
                }
                cold.command = format!("{} && {}", show(&copy), show(&unpack));
                cold.wall.push(a.wall + b.wall);
                cold.cpu.push(a.cpu + b.cpu);
                cold.blob_gets.push(gets as f64);
                cold.disk.push(disk_usage(dir) as f64);
                cold.parts
                    .entry("skopeo copy".into())
                    .or_default()
                    .push(ms(a.wall));
                cold.parts
                    .entry("umoci unpack".into())
                    .or_default()
                    .push(ms(b.wall));
            }
        }
        Ok(())
    }
}

/// Runs the whole image benchmark.
pub async fn run(podium_bin: &Path, a: &ImageBenchArgs) -> anyhow::Result<ImagesReport> {
    let repeats = a.image_repeats.max(1);
    if !podium_bin.exists() {
        anyhow::bail!("podium binary {} not found", podium_bin.display());
    }
    let mut notes = Vec::new();
    let mut tools = vec![Tool::Podium];
    for p in &a.image_peers {
        match p.as_str() {
            "none" => {}
            "podman" => match which("podman") {
                Some(_) => {
                    tools.push(Tool::Podman);
                    notes.push(format!(
                        "{}; storage driver {}",
                        version(&["podman", "--version"]),
                        a.podman_storage_driver
                    ));
                }
                None => notes.push("podman skipped: not installed (apt-get install podman)".into()),
            },
            "skopeo" => match (which("skopeo"), which("umoci")) {
                (Some(_), Some(_)) => {
                    tools.push(Tool::SkopeoUmoci);
                    notes.push(format!(
                        "{}; {}",
                        version(&["skopeo", "--version"]),
                        version(&["umoci", "--version"])
                    ));
                }
                _ => notes.push(
                    "skopeo+umoci skipped: not installed (apt-get install skopeo umoci)".into(),
                ),
            },
            other => anyhow::bail!("unknown image peer {other:?} (podman, skopeo, none)"),
        }
    }

    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    notes.push(format!("load average at start: {}", load().trim()));
    let tmp = tempfile::Builder::new()
        .prefix("podium-bench-images-")
        .tempdir()?;
    let reg = Registry::start(&a.registry_bin, tmp.path()).await?;
    eprintln!(
        "images: registry on {} (log {})",
        reg.host(),
        reg.log.display()
    );
    let target = a.image_mb * 1_000_000;
    let built = tokio::task::spawn_blocking(move || build_layers(target)).await??;
    let facts = push(&reg.host(), &built).await?;
    drop(built);
    eprintln!(
        "images: pushed {} ({} layers, {:.1} MB compressed, {:.1} MB unpacked)",
        facts.reference,
        facts.layers.len(),
        facts.compressed_bytes as f64 / 1e6,
        facts.uncompressed_bytes as f64 / 1e6
    );

    // The peers' configuration: runc and cgroupfs as on this host (pulls run nothing),
    // no search registries, and a policy that accepts unsigned images.
    let podman = PodmanConf::write(
        &tmp.path().join("conf"),
        tmp.path(),
        &a.podman_storage_driver,
    )?;
    let bench = Bench {
        reg: &reg,
        image: facts.reference.clone(),
        podium_bin: podium_bin.to_path_buf(),
        scratch: tmp.path().join("runs"),
        podman,
        layers: facts.layers.len() as u64,
    };

    let mut cold: BTreeMap<String, Samples> = BTreeMap::new();
    let mut warm: BTreeMap<String, Samples> = BTreeMap::new();
    let mut active = tools.clone();
    for i in 0..repeats {
        // Rotate the order every repeat so no tool always runs first (or after another).
        let mut order = active.clone();
        if !order.is_empty() {
            let k = i % order.len();
            order.rotate_left(k);
        }
        for tool in order {
            let name = tool_name(tool);
            eprintln!("images: repeat {}/{repeats}: {name}", i + 1);
            let c = cold.entry(name.to_string()).or_default();
            let w = warm.entry(name.to_string()).or_default();
            if let Err(e) = bench.repeat(tool, i, c, w).await {
                if tool == Tool::Podium {
                    return Err(e.context("podium image pull"));
                }
                // A peer that cannot work here is reported, not fatal.
                eprintln!("images: {name} dropped: {e:#}");
                notes.push(format!("{name} dropped in repeat {}: {e:#}", i + 1));
                active.retain(|t| *t != tool);
            }
        }
    }

    let mut results = Vec::new();
    for tool in &tools {
        let name = tool_name(*tool);
        if let Some(s) = cold.get(name).filter(|s| !s.wall.is_empty()) {
            results.push(s.result(&format!("{name} cold")));
        }
        if let Some(s) = warm.get(name).filter(|s| !s.wall.is_empty()) {
            results.push(s.result(&format!("{name} warm")));
        }
    }
    notes.push(format!("load average at end: {}", load().trim()));
    remove_dir(&tmp.path().join("runs"));
    let ratios = ratios(&results);
    Ok(ImagesReport {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: Machine::detect(),
        repeats,
        image: facts,
        tools: results,
        ratios,
        notes,
    })
}

fn tool_name(t: Tool) -> &'static str {
    match t {
        Tool::Podium => "podium",
        Tool::Podman => "podman",
        Tool::SkopeoUmoci => "skopeo+umoci",
    }
}

/// podium p50 / peer p50 for each kind (cold, warm) the peer has.
fn ratios(results: &[ToolResult]) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for kind in ["cold", "warm"] {
        let Some(p) = results.iter().find(|r| r.name == format!("podium {kind}")) else {
            continue;
        };
        for peer in results
            .iter()
            .filter(|r| !r.name.starts_with("podium") && r.name.ends_with(kind))
        {
            if peer.p50_ms > 0.0 {
                m.insert(
                    format!("podium {kind} / {} (p50)", peer.name),
                    p.p50_ms / peer.p50_ms,
                );
            }
        }
    }
    m
}

impl ImagesReport {
    /// The human-readable rendering.
    pub fn table(&self) -> String {
        let mut o =
            crate::report::table_header("podium-bench images", &self.date, &self.machine, None);
        let im = &self.image;
        let _ = writeln!(
            o,
            "image {} ({}): {} layers, {:.1} MB gzip, {:.1} MB unpacked",
            im.reference,
            &im.manifest_digest.get(..19).unwrap_or(""),
            im.layers.len(),
            im.compressed_bytes as f64 / 1e6,
            im.uncompressed_bytes as f64 / 1e6
        );
        for (i, l) in im.layers.iter().enumerate() {
            let _ = writeln!(
                o,
                "  layer {}: {:>6.1} MB gzip {:>6.1} MB tar {:>5} files  {}",
                i + 1,
                l.compressed_bytes as f64 / 1e6,
                l.uncompressed_bytes as f64 / 1e6,
                l.files,
                l.what
            );
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<20} {:>5} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
            "pull", "runs", "p50 ms", "p99 ms", "min ms", "cpu ms", "blob GETs", "disk MB"
        );
        for r in &self.tools {
            let _ = writeln!(
                o,
                "{:<20} {:>5} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>10.0} {:>9}",
                r.name,
                r.samples_ms.len(),
                r.p50_ms,
                r.p99_ms,
                r.min_ms,
                r.cpu_ms_p50,
                r.blob_gets_p50,
                r.disk_bytes_p50
                    .map(|b| format!("{:.1}", b / 1e6))
                    .unwrap_or_else(|| "n/a".into())
            );
        }
        let _ = writeln!(
            o,
            "(p99 of {} samples is their maximum; cpu, blob GETs and disk are medians)",
            self.repeats
        );
        let _ = writeln!(o);
        for r in &self.tools {
            let s: Vec<String> = r.samples_ms.iter().map(|v| format!("{v:.0}")).collect();
            let mut line = format!("{:<20} ms per run [{}]", r.name, s.join(", "));
            for (k, v) in &r.parts_ms_p50 {
                let _ = write!(line, "  {k} p50 {v:.0} ms");
            }
            let _ = writeln!(o, "{line}");
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "ratios (same run; no target in issue 3):");
        for (k, v) in &self.ratios {
            let _ = writeln!(o, "  {k}: {v:.2}");
        }
        for n in &self.notes {
            let _ = writeln!(o, "note: {n}");
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "commands:");
        for r in &self.tools {
            let _ = writeln!(o, "  {}: {}", r.name, r.command);
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_pull_keeps_global_options() {
        let cmd: Vec<String> = ["podman", "--root", "/r", "pull", "--quiet", "img"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            before_pull(&cmd, "images"),
            ["podman", "--root", "/r", "images"]
        );
    }

    #[test]
    fn parses_podium_pull_summary() {
        let out = "Pulled 127.0.0.1:5000/bench/big:1 (5 layers, 50123456 bytes downloaded in 1.2s)\n127.0.0.1:5000/bench/big@sha256:ab\n";
        assert_eq!(parse_podium_pulled(out), Some((5, 50_123_456)));
        let warm = "Pulled x:1 (0 layers, 0 bytes downloaded in 0.0s)\n";
        assert_eq!(parse_podium_pulled(warm), Some((0, 0)));
        assert_eq!(parse_podium_pulled("error: nope\n"), None);
    }

    #[test]
    fn samples_summarise_by_nearest_rank() {
        let s = Samples {
            wall: [30, 10, 50, 20, 40]
                .iter()
                .map(|m| Duration::from_millis(*m))
                .collect(),
            cpu: vec![Duration::from_millis(5); 5],
            blob_gets: vec![6.0, 6.0, 6.0, 6.0, 7.0],
            ..Default::default()
        };
        let r = s.result("podium cold");
        assert!((r.p50_ms - 30.0).abs() < 1e-9);
        assert!((r.p99_ms - 50.0).abs() < 1e-9);
        assert!((r.min_ms - 10.0).abs() < 1e-9);
        assert!((r.blob_gets_p50 - 6.0).abs() < 1e-9);
        assert_eq!(r.samples_ms, vec![30.0, 10.0, 50.0, 20.0, 40.0]);
        assert!(r.disk_bytes_p50.is_none());
    }

    #[test]
    fn ratios_pair_podium_with_each_peer_of_the_same_kind() {
        let mk = |name: &str, p50: f64| ToolResult {
            name: name.into(),
            command: String::new(),
            samples_ms: vec![p50],
            p50_ms: p50,
            p99_ms: p50,
            min_ms: p50,
            cpu_ms_p50: 0.0,
            blob_gets_p50: 0.0,
            disk_bytes_p50: None,
            parts_ms_p50: BTreeMap::new(),
        };
        let r = ratios(&[
            mk("podium cold", 500.0),
            mk("podium warm", 20.0),
            mk("podman cold", 1000.0),
            mk("podman warm", 80.0),
            mk("skopeo+umoci cold", 2000.0),
        ]);
        assert_eq!(r.len(), 3, "{r:?}");
        assert!((r["podium cold / podman cold (p50)"] - 0.5).abs() < 1e-9);
        assert!((r["podium warm / podman warm (p50)"] - 0.25).abs() < 1e-9);
        assert!((r["podium cold / skopeo+umoci cold (p50)"] - 0.25).abs() < 1e-9);
    }

    #[test]
    fn random_bytes_do_not_compress_and_text_does() {
        let mut rng = Rng(1);
        let r = rng.bytes(256 * 1024);
        assert_eq!(r.len(), 256 * 1024);
        assert!(gzip(&r).unwrap().len() > r.len() * 99 / 100);
        let t = text(&mut rng, 256 * 1024);
        assert_eq!(t.len(), 256 * 1024);
        let z = gzip(&t).unwrap().len();
        assert!(z < t.len() / 2 && z > t.len() / 20, "{z}");
    }

    #[test]
    fn layers_add_up_to_the_target_and_carry_whiteouts() {
        if !Path::new("/bin/busybox").exists() {
            return;
        }
        let target = 8_000_000;
        let layers = build_layers(target).unwrap();
        assert_eq!(layers.len(), 5);
        let total: usize = layers.iter().map(|l| l.gz.len()).sum();
        // Within 25 % of the target (the text ratio is estimated from a sample).
        assert!(
            (total as f64 - target as f64).abs() < target as f64 * 0.25,
            "{total}"
        );
        let mut a = tar::Archive::new(&layers[4].tar[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(
            names.iter().any(|n| n.ends_with(".wh.blob-00.bin")),
            "{names:?}"
        );
        let mut d = flate2::read::GzDecoder::new(&layers[1].gz[..]);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut back).unwrap();
        assert_eq!(back, layers[1].tar);
    }

    #[test]
    fn disk_usage_counts_hard_links_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![1u8; 64 * 1024]).unwrap();
        let one = disk_usage(d.path());
        assert!(one >= 64 * 1024, "{one}");
        std::fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        assert_eq!(disk_usage(d.path()), one);
    }
}
