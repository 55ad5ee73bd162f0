//! The server's PKI: a CA generated once into the data dir, a serving certificate issued by
//! it at every start (so its names follow the current flags), and the bearer tokens.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("reading or writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate operation {op} failed: {source}")]
    Cert {
        op: &'static str,
        #[source]
        source: rcgen::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_err(op: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Cert { op, source }
}

/// Writes a file readable only by its owner (keys, tokens), atomically.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(contents).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// The PEM material the server needs.
pub struct ServerPki {
    pub ca_cert_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("ca params"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "podium-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time_now();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    Ok(params)
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Loads the CA from `dir` (creating it on first start) and issues a serving certificate
/// for `names` (DNS names and IP addresses).
pub fn load_or_create(dir: &Path, names: &[String]) -> Result<ServerPki, PkiError> {
    let tls = dir.join("tls");
    fs::create_dir_all(&tls).map_err(io_err(&tls))?;
    let ca_crt_path = tls.join("ca.crt");
    let ca_key_path = tls.join("ca.key");
    let (ca_cert_pem, ca_key) = if ca_crt_path.exists() && ca_key_path.exists() {
        let pem = fs::read_to_string(&ca_crt_path).map_err(io_err(&ca_crt_path))?;
        let key_pem = fs::read_to_string(&ca_key_path).map_err(io_err(&ca_key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(cert_err("load CA key"))?;
        (pem, key)
    } else {
        let key = KeyPair::generate().map_err(cert_err("generate CA key"))?;
        let cert = ca_params()?
            .self_signed(&key)
            .map_err(cert_err("self-sign CA"))?;
        let pem = cert.pem();
        write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
        fs::write(&ca_crt_path, &pem).map_err(io_err(&ca_crt_path))?;
        (pem, key)
    };
    let issuer =
        Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key).map_err(cert_err("parse CA certificate"))?;

    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(cert_err("serving params"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "podium-apiserver");
    for name in names {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.clone()
                    .try_into()
                    .map_err(cert_err("serving certificate name"))?,
            ),
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time_now();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let key = KeyPair::generate().map_err(cert_err("generate serving key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(cert_err("sign serving certificate"))?;
    Ok(ServerPki {
        ca_cert_pem,
        serving_cert_pem: cert.pem(),
        serving_key_pem: key.serialize_pem(),
    })
}

/// A fresh random token: 32 bytes, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the token stored at `path`, or stores `given` (or a fresh one) there.
pub fn load_or_create_token(path: &Path, given: Option<&str>) -> Result<String, PkiError> {
    if let Some(t) = given {
        let current = fs::read_to_string(path).ok();
        if current.as_deref().map(str::trim) != Some(t) {
            write_private(path, t.as_bytes())?;
        }
        return Ok(t.to_string());
    }
    match fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => {
            let t = random_token();
            write_private(path, t.as_bytes())?;
            Ok(t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_reused_and_serving_cert_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let b = load_or_create(dir.path(), &["localhost".into()]).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_ne!(a.serving_cert_pem, b.serving_cert_pem);
        let mode = fs::metadata(dir.path().join("tls/ca.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn tokens_persist() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        let t1 = load_or_create_token(&p, None).unwrap();
        assert_eq!(t1.len(), 64);
        assert_eq!(load_or_create_token(&p, None).unwrap(), t1);
        assert_eq!(load_or_create_token(&p, Some("given")).unwrap(), "given");
        assert_eq!(load_or_create_token(&p, None).unwrap(), "given");
    }
}
