//! The `oriole` command: run the server, manage accounts, check the configuration, and move
//! data in and out (XEP-0227).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use oriole::admin::{self, Request};
use oriole::config::Config;

#[derive(Parser)]
#[command(name = "oriole", version, about = "Oriole, an XMPP server")]
struct Cli {
    /// Configuration file. Without it, ./oriole.toml is used if present, else the built-in
    /// default (domain localhost, data in ./data).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server in the foreground until SIGTERM or SIGINT.
    Run,
    /// Manage accounts (works whether the server is running or not).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Validate the configuration and the certificates, then exit.
    Check,
    /// Write every account and its data to a XEP-0227 file (server stopped).
    Export {
        /// Output file ("-" for standard output).
        file: PathBuf,
    },
    /// Read a XEP-0227 file into storage (server stopped).
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum UserAction {
    /// Create an account.
    Add {
        /// user@domain
        jid: String,
        /// The password; asked for when absent.
        #[arg(long)]
        password: Option<String>,
    },
    /// Change an account's password.
    Passwd {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account and all its data.
    Del { jid: String },
    /// List the accounts of a domain (default: the first hosted domain).
    List { domain: Option<String> },
}

fn load_config(path: Option<&Path>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => {
            let local = Path::new("oriole.toml");
            if local.exists() {
                Config::load(local).map_err(|e| e.to_string())
            } else {
                Ok(Config::default())
            }
        }
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn read_password(given: Option<String>) -> Result<String, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
    let second = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
    if first != second {
        return Err("the passwords differ".into());
    }
    Ok(first)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load_config(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oriole: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oriole: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run => run(config).await,
            Command::User { action } => user(config, action).await,
            Command::Check => check(&config).await,
            Command::Export { file } => export(&config, &file),
            Command::Import { file } => import(&config, &file),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oriole: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    init_logging(&config);
    let server = oriole::server::RunningServer::start(config)
        .await
        .map_err(|e| e.to_string())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = server.wait() => {}
    }
    server.shutdown().await;
    Ok(())
}

async fn user(config: Config, action: UserAction) -> Result<(), String> {
    let req = match action {
        UserAction::Add { jid, password } => Request::UserAdd {
            jid,
            password: read_password(password)?,
        },
        UserAction::Passwd { jid, password } => Request::UserPasswd {
            jid,
            password: read_password(password)?,
        },
        UserAction::Del { jid } => Request::UserDel { jid },
        UserAction::List { domain } => Request::UserList {
            domain: domain.unwrap_or_else(|| config.default_domain().to_string()),
        },
    };
    let resp = match admin::request(&config, &req).await? {
        Some(r) => r,
        None => {
            // No server running: work on the database directly.
            let storage = oriole::server::open_storage(&config).map_err(|e| e.to_string())?;
            let resp = admin::execute(&config, storage.as_ref(), &req, &|_| {});
            storage.flush().map_err(|e| e.to_string())?;
            resp
        }
    };
    for item in &resp.list {
        println!("{item}");
    }
    if resp.ok {
        if resp.list.is_empty() {
            println!("{}", resp.message);
        }
        Ok(())
    } else {
        Err(resp.message)
    }
}

async fn check(config: &Config) -> Result<(), String> {
    println!("configuration: ok");
    println!("domains: {}", config.server.domains.join(", "));
    println!("data folder: {}", config.server.data_dir.display());
    let tls = oriole::transport::TlsContext::load(config).map_err(|e| e.to_string())?;
    for line in tls.describe(config) {
        println!("tls: {line}");
    }
    println!("c2s STARTTLS: {}", config.c2s.starttls.join(", "));
    println!("c2s Direct TLS: {}", config.c2s.direct_tls.join(", "));
    for line in oriole::s2s::check::report(config, &tls).await {
        println!("s2s: {line}");
    }
    if !config.c2s.require_encryption {
        println!(
            "warning: c2s.require_encryption is off: passwords may cross the network in clear"
        );
    }
    Ok(())
}

fn export(config: &Config, file: &Path) -> Result<(), String> {
    let storage = oriole::server::open_storage(config).map_err(|e| e.to_string())?;
    let xml = oriole::storage::xep0227::export(storage.as_ref(), &config.server.domains)
        .map_err(|e| e.to_string())?;
    if file == Path::new("-") {
        println!("{xml}");
    } else {
        std::fs::write(file, xml).map_err(|e| format!("{}: {e}", file.display()))?;
        eprintln!("exported to {}", file.display());
    }
    Ok(())
}

fn import(config: &Config, file: &Path) -> Result<(), String> {
    let xml = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let storage = oriole::server::open_storage(config).map_err(|e| e.to_string())?;
    let report =
        oriole::storage::xep0227::import(storage.as_ref(), &xml).map_err(|e| e.to_string())?;
    storage.flush().map_err(|e| e.to_string())?;
    println!("{report:?}");
    Ok(())
}
