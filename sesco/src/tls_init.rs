//! `sesco tls init`: one command makes what TLS between all parts needs — a certificate
//! authority, and Sesco's certificate and key signed by it for the names clients use.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::auth::write_private;

/// The files `init` writes, by name, in its directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "sesco.pem";
pub const SERVER_KEY: &str = "sesco.key";

/// Writes a new authority and a server certificate for `names` (DNS names or IP
/// addresses) into `dir`. Refuses to overwrite existing files unless `force`.
pub fn init(dir: &Path, names: &[String], force: bool) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(
        !names.is_empty(),
        "name at least one host name or address clients use"
    );
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let paths: Vec<PathBuf> = [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY]
        .iter()
        .map(|f| dir.join(f))
        .collect();
    if !force && let Some(existing) = paths.iter().find(|p| p.exists()) {
        anyhow::bail!("{} exists; pass --force to replace it", existing.display());
    }

    let ca_key = KeyPair::generate().context("cannot generate the authority's key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, "Sesco cluster authority");
    ca_params.distinguished_name = ca_name;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().context("cannot generate Sesco's key")?;
    let mut params = CertificateParams::new(names.to_vec())
        .context("a name is neither a DNS name nor an IP address")?;
    let mut server_name = DistinguishedName::new();
    server_name.push(DnType::CommonName, names[0].as_str());
    params.distinguished_name = server_name;
    let server_cert = params.signed_by(&server_key, &issuer)?;

    let write_public = |path: &Path, text: &str| {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write_public(&paths[0], &ca_cert.pem())?;
    write_private(&paths[1], &issuer.key().serialize_pem())
        .with_context(|| format!("cannot write {}", paths[1].display()))?;
    write_public(&paths[2], &server_cert.pem())?;
    write_private(&paths[3], &server_key.serialize_pem())
        .with_context(|| format!("cannot write {}", paths[3].display()))?;
    Ok(paths)
}
