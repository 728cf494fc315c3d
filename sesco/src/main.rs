//! The Sesco server binary.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod qram_cmd;

#[derive(Parser)]
#[command(name = "sesco", version, about = "Sesco: the global QoS session coordinator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Q-RAM tools over the stable instance format.
    Qram {
        #[command(subcommand)]
        command: QramCommand,
    },
}

#[derive(Subcommand)]
enum QramCommand {
    /// Solve one instance file and print {"choice", "utility", "solve_us"} as JSON.
    Solve {
        /// Instance file (JSON, see ARCHITECTURE.md).
        file: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Qram {
            command: QramCommand::Solve { file },
        } => qram_cmd::solve(&file),
    }
}
