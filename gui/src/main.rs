//! `sesco-gui`: the desktop app for Sesco's users and admins.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use sesco_gui::{SescoApp, StartOptions, View};

#[derive(Parser)]
#[command(
    name = "sesco-gui",
    version,
    about = "Sesco's desktop app: request and watch QoS sessions; administer users, applications and nodes",
    long_about = "Sesco's desktop app. Without --user it opens on the sign-in form. With --user \
and a password (--password-file, SESCO_PASSWORD_FILE or SESCO_PASSWORD) it signs in right \
away, and --view picks the page it opens on.",
    after_help = "Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=sesco_gui=debug) for more."
)]
struct Cli {
    /// Sesco's address (host:port; the port defaults to 7207).
    #[arg(long, env = "SESCO_ADDR", default_value = "127.0.0.1:7207")]
    server: String,
    /// Speak TLS to Sesco, trusting this certificate authority (PEM; `sesco tls init`).
    #[arg(long, env = "SESCO_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// User to sign in as; with a password, the app signs in at start.
    #[arg(long, env = "SESCO_USER")]
    user: Option<String>,
    /// File holding the password (first line).
    #[arg(long, env = "SESCO_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// The page to open on after signing in.
    #[arg(long, value_enum)]
    view: Option<View>,
    /// Write this file once signed in and the first data has loaded (for scripts).
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Window size in logical pixels, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x800", value_parser = parse_size)]
    size: (f32, f32),
}

fn parse_size(text: &str) -> Result<(f32, f32), String> {
    let (w, h) = text
        .split_once('x')
        .ok_or_else(|| format!("'{text}' is not WIDTHxHEIGHT"))?;
    let w: f32 = w.parse().map_err(|_| format!("'{w}' is not a width"))?;
    let h: f32 = h.parse().map_err(|_| format!("'{h}' is not a height"))?;
    if w < 320.0 || h < 240.0 {
        return Err("the window needs at least 320x240".into());
    }
    Ok((w, h))
}

fn read_password(cli: &Cli) -> anyhow::Result<Option<String>> {
    if let Some(path) = &cli.password_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?;
        let password = text.lines().next().unwrap_or("").to_string();
        if password.is_empty() {
            bail!("the password file {} is empty", path.display());
        }
        return Ok(Some(password));
    }
    Ok(std::env::var("SESCO_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty()))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,sesco_gui=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let password = if cli.user.is_some() {
        read_password(&cli)?
    } else {
        None
    };
    let options = StartOptions {
        server: cli.server.clone(),
        user: cli.user.clone(),
        password,
        view: cli.view,
        ready_file: cli.ready_file.clone(),
        tls: match &cli.tls_ca {
            Some(ca) => Some(
                sesco_proto::transport::ClientTls::from_ca_file(ca)
                    .context("cannot load the TLS authority")?,
            ),
            None => None,
        },
    };
    tracing::info!(server = %options.server, user = ?options.user, "starting");
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Sesco")
            .with_app_id("sesco-gui")
            .with_inner_size([cli.size.0, cli.size.1])
            .with_min_inner_size([640.0, 420.0]),
        ..Default::default()
    };
    eframe::run_native(
        "Sesco",
        native,
        Box::new(move |cc| Ok(Box::new(SescoApp::new(&cc.egui_ctx, options)))),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
    .context("cannot open the window")
}
