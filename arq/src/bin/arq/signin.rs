//! Where `arq` finds its credentials, and the token `arq login` saves.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arq::client::{Client, Credentials};
use arq::proto::message::Identity;
use arq::proto::transport::ClientTls;
use serde::{Deserialize, Serialize};

use crate::Cli;

#[derive(Serialize, Deserialize)]
struct SavedToken {
    server: String,
    user: String,
    token: String,
    expires_ms: u64,
}

/// `$SESCO_TOKEN_FILE`, else `$XDG_CONFIG_HOME/sesco/token`, else `~/.config/sesco/token`.
fn token_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SESCO_TOKEN_FILE") {
        return Ok(PathBuf::from(path));
    }
    let config = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(config.join("sesco").join("token"))
}

/// The first line of a file holding a secret.
pub fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").to_string();
    if secret.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(secret)
}

fn credentials(cli: &Cli) -> anyhow::Result<Credentials> {
    if let Some(token) = &cli.token {
        return Ok(Credentials::Token(token.clone()));
    }
    if let Some(user) = &cli.user {
        let password = match (&cli.password_file, std::env::var("SESCO_PASSWORD")) {
            (Some(path), _) => read_secret_file(path)?,
            (None, Ok(password)) if !password.is_empty() => password,
            _ => bail!(
                "--user {user} needs a password: --password-file FILE, SESCO_PASSWORD_FILE or SESCO_PASSWORD"
            ),
        };
        return Ok(Credentials::Password {
            user: user.clone(),
            password,
        });
    }
    let path = token_path()?;
    let saved: SavedToken = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a saved token; run `arq login`", path.display()))?,
        Err(_) => bail!(
            "no credentials: pass --user with --password-file (or set SESCO_USER and SESCO_PASSWORD_FILE), or run `arq login`"
        ),
    };
    if saved.server != cli.server {
        bail!(
            "the saved token is for {}, not {}; run `arq login --server {}`",
            saved.server,
            cli.server,
            cli.server
        );
    }
    Ok(Credentials::Token(saved.token))
}

/// Connects and signs in.
pub async fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let credentials = credentials(cli)?;
    let tls = match &cli.tls_ca {
        Some(ca) => Some(ClientTls::from_ca_file(ca)?),
        None => None,
    };
    Client::connect_with(&cli.server, credentials, tls.as_ref())
        .await
        .with_context(|| format!("cannot sign in to Sesco at {}", cli.server))
}

/// Saves the token Sesco issued, readable by the user only.
pub fn save_token(client: &Client) -> anyhow::Result<PathBuf> {
    let Identity::User {
        name,
        token,
        token_expires_ms,
        ..
    } = client.identity()
    else {
        bail!("Sesco did not sign this connection in as a user");
    };
    let saved = SavedToken {
        server: client.addr().to_string(),
        user: name.clone(),
        token: token.clone(),
        expires_ms: *token_expires_ms,
    };
    let path = token_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    serde_json::to_writer(&mut file, &saved)?;
    Ok(path)
}
