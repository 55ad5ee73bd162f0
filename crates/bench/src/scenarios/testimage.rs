//! Benchmark images built here from the host's static busybox (Debian's
//! `busybox-static`, `/bin/busybox`): deterministic tar layers ([`TarLayer`]: fixed
//! owners and mtimes), the busybox base layer both benchmarks start from
//! ([`TarLayer::busybox`]), and a `docker save` archive of a one-layer busybox image
//! ([`docker_archive`]) that `podium image import` and `podman load` both take, so the
//! pod benchmark's engines run the very same image from their caches.

use anyhow::Context as _;
use podium_image::Digest;
use serde_json::json;

/// The static busybox every benchmark image carries.
pub const BUSYBOX: &str = "/bin/busybox";

/// Reads the host's static busybox.
pub fn read_busybox() -> anyhow::Result<Vec<u8>> {
    std::fs::read(BUSYBOX)
        .with_context(|| format!("{BUSYBOX} missing: apt-get install busybox-static"))
}

/// An uncompressed tar layer being built.
pub struct TarLayer {
    b: tar::Builder<Vec<u8>>,
    files: usize,
}

impl Default for TarLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl TarLayer {
    pub fn new() -> Self {
        TarLayer {
            b: tar::Builder::new(Vec::new()),
            files: 0,
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(size);
        h
    }

    pub fn dir(&mut self, path: &str) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.b.append_data(&mut h, path, &[][..])
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.files += 1;
        self.b.append_data(&mut h, path, data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.b.append_link(&mut h, path, target)
    }

    /// The tar bytes and the number of regular files.
    pub fn finish(self) -> std::io::Result<(Vec<u8>, usize)> {
        let files = self.files;
        Ok((self.b.into_inner()?, files))
    }

    /// A layer with the directories `dirs` (each ending in `/`), `bin/busybox`, a
    /// symlink `bin/<applet>` → `busybox` per applet, and a root-only /etc/passwd and
    /// /etc/group (`dirs` must hold `bin/` and `etc/`).
    pub fn busybox(dirs: &[&str], busybox: &[u8], applets: &[&str]) -> std::io::Result<Self> {
        let mut l = TarLayer::new();
        for d in dirs {
            l.dir(d)?;
        }
        l.file("bin/busybox", 0o755, busybox)?;
        for applet in applets {
            l.symlink(&format!("bin/{applet}"), "busybox")?;
        }
        l.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")?;
        l.file("etc/group", 0o644, b"root:x:0:\n")?;
        Ok(l)
    }
}

/// The GOARCH name of this machine (what image configs carry).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// A `docker save` archive of a one-layer image named `reference` (a full reference,
/// e.g. `podium.bench/busybox:1`): `manifest.json`, the config and `<id>/layer.tar`.
/// The image's PATH is `/bin`, where the applets are.
pub fn docker_archive(reference: &str, layer_tar: &[u8]) -> anyhow::Result<Vec<u8>> {
    let diff_id = Digest::of_bytes(layer_tar).to_string();
    let layer_hex = diff_id.trim_start_matches("sha256:").to_string();
    let config = json!({
        "architecture": go_arch(),
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "podium-bench: busybox-static"}],
    });
    let config = serde_json::to_vec(&config)?;
    let config_hex = Digest::of_bytes(&config)
        .to_string()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest = json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [reference],
        "Layers": [format!("{layer_hex}/layer.tar")],
    }]);
    let mut out = TarLayer::new();
    out.dir(&format!("{layer_hex}/"))?;
    out.file(&format!("{layer_hex}/layer.tar"), 0o644, layer_tar)?;
    out.file(&format!("{config_hex}.json"), 0o644, &config)?;
    out.file("manifest.json", 0o644, &serde_json::to_vec(&manifest)?)?;
    Ok(out.finish()?.0)
}

/// The pod benchmark's image: busybox with the applets its pods use, as a `docker save`
/// archive named `reference`.
pub fn busybox_archive(reference: &str) -> anyhow::Result<Vec<u8>> {
    let busybox = read_busybox()?;
    let layer = TarLayer::busybox(
        &["bin/", "etc/", "tmp/", "root/", "proc/", "sys/", "dev/"],
        &busybox,
        &["sh", "sleep", "true", "cat", "ls", "ps", "echo", "env"],
    )?;
    let (tar, _) = layer.finish()?;
    docker_archive(reference, &tar)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                (name, data)
            })
            .collect()
    }

    #[test]
    fn busybox_layer_links_applets() {
        let l = TarLayer::busybox(&["bin/", "etc/"], b"ELF", &["sh", "sleep"]).unwrap();
        let (tar, files) = l.finish().unwrap();
        assert_eq!(files, 3);
        let names: Vec<String> = entries(&tar).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [
                "bin/",
                "etc/",
                "bin/busybox",
                "bin/sh",
                "bin/sleep",
                "etc/passwd",
                "etc/group"
            ]
        );
    }

    #[test]
    fn docker_archive_is_consistent() {
        let layer = TarLayer::busybox(&["bin/", "etc/"], b"ELF", &["sh"])
            .unwrap()
            .finish()
            .unwrap()
            .0;
        let archive = docker_archive("podium.bench/busybox:1", &layer).unwrap();
        let files = entries(&archive);
        let get = |n: &str| files.iter().find(|e| e.0 == n).map(|e| e.1.clone());
        let manifest: serde_json::Value =
            serde_json::from_slice(&get("manifest.json").unwrap()).unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], "podium.bench/busybox:1");
        let layer_path = manifest[0]["Layers"][0].as_str().unwrap();
        assert_eq!(get(layer_path).unwrap(), layer);
        let config: serde_json::Value =
            serde_json::from_slice(&get(manifest[0]["Config"].as_str().unwrap()).unwrap()).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            Digest::of_bytes(&layer).to_string()
        );
        assert_eq!(config["config"]["Env"][0], "PATH=/bin");
    }
}
