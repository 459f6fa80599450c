//! `oriole-bench`: a load generator for XMPP servers (Oriole, Prosody, ejabberd, or any other)
//! and the TLS relay that is the chat scenario's physical-limit reference. Independent of the
//! server's code: its own framing ([`framer`]), client ([`client`]), measurements from /proc
//! ([`metrics`]), account files ([`accounts`]) and relay ([`relay`]). Each scenario prints a
//! human summary and one machine-readable line `RESULT scenario=… server=… key=value …` that
//! `interop/bench/run` turns into the comparison table. See docs/performance.md.

mod accounts;
mod client;
mod framer;
mod metrics;
mod relay;
mod scenarios;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "oriole-bench",
    about = "XMPP load generator and benchmark scenarios"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct Global {
    /// Server address (client connections).
    #[arg(long, global = true, default_value = "127.0.0.1:5222")]
    server: SocketAddr,
    /// The XMPP domain of the accounts.
    #[arg(long, global = true, default_value = "bench.example")]
    domain: String,
    /// STARTTLS on a plain port, or Direct TLS.
    #[arg(long, global = true, value_enum, default_value = "starttls")]
    tls: client::TlsMode,
    /// SASL mechanism.
    #[arg(long, global = true, value_enum, default_value = "scram-sha1")]
    mech: client::Mech,
    /// The password of every benchmark account.
    #[arg(long, global = true, default_value = "bench-pass")]
    password: String,
    /// PID of the server process, for its CPU time and memory.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// The server's data folder, for disk use (offline scenario).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Name printed in the result row.
    #[arg(long, global = true, default_value = "server")]
    label: String,
    /// Connect every client from 127.0.0.1 instead of spreading over 127.1.0.1, 127.1.0.2, …
    #[arg(long, global = true)]
    no_spread: bool,
    /// File keeping SCRAM SaltedPassword values between runs (a client may cache them).
    #[arg(long, global = true)]
    scram_cache: Option<PathBuf>,
    /// Logins in flight at once.
    #[arg(long, global = true, default_value_t = 50)]
    concurrency: usize,
}

#[derive(Subcommand)]
enum Command {
    /// N clients log in (TLS, SASL, bind, presence) and leave: logins/s, latency.
    Login {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
    },
    /// N authenticated sessions held idle: server memory per session, idle CPU.
    Idle {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Seconds to hold the sessions while measuring idle CPU.
        #[arg(long, default_value_t = 10)]
        hold: u64,
    },
    /// N clients in pairs send each other messages: throughput, one-way latency, loss.
    Chat {
        #[arg(long, default_value_t = 200)]
        clients: usize,
        /// Closed loop: messages in flight per pair.
        #[arg(long, default_value_t = 8)]
        window: usize,
        /// Open loop: total messages per second over all clients (closed loop when 0).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        #[arg(long, default_value_t = 3)]
        warmup: u64,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Bytes of padding in each body.
        #[arg(long, default_value_t = 64)]
        pad: usize,
        /// Run over the TLS relay reference (`relay-server`) instead of an XMPP server.
        #[arg(long)]
        relay: bool,
    },
    /// Accounts r0… with large rosters log in and fetch the roster: login cost.
    Roster {
        #[arg(long, default_value_t = 100)]
        clients: usize,
    },
    /// Store messages for offline accounts, then deliver them when those log in.
    Offline {
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        /// Offline recipients (accounts u<senders>…).
        #[arg(long, default_value_t = 100)]
        recipients: usize,
        /// Sending clients (accounts u0…).
        #[arg(long, default_value_t = 10)]
        senders: usize,
    },
    /// N occupants join one room (the first creates it), then S senders send groupchat
    /// messages at a fixed total rate: joins/s, deliveries/s, one-way latency, loss, CPU.
    Muc {
        #[arg(long, default_value_t = 100)]
        occupants: usize,
        #[arg(long, default_value_t = 5)]
        senders: usize,
        /// Total groupchat messages per second over all senders (each is delivered N times).
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Bytes of padding in each body.
        #[arg(long, default_value_t = 64)]
        pad: usize,
        /// The room's local part; the service is `conference.<domain>` unless --service.
        #[arg(long, default_value = "bench")]
        room: String,
        #[arg(long)]
        service: Option<String>,
        /// A `var=value` field for the creator's owner form (repeatable; none: instant room).
        #[arg(long)]
        room_config: Vec<String>,
        /// Seconds allowed for all joins, and again for their presences to arrive.
        #[arg(long, default_value_t = 300)]
        join_timeout: u64,
    },
    /// The TLS byte relay (the chat scenario's reference), until stopped.
    RelayServer {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Write the benchmark accounts for a server to import.
    Accounts {
        /// `xep0227` (a file) or `prosody` (a data folder).
        #[arg(long)]
        format: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 100)]
        roster_users: usize,
        #[arg(long, default_value_t = 500)]
        roster_size: usize,
        /// PBKDF2 iterations (prosody format).
        #[arg(long, default_value_t = 4096)]
        iterations: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oriole-bench: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oriole-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let g = cli.global;
    let cache = g
        .scram_cache
        .as_deref()
        .map(client::load_cache)
        .unwrap_or_default();
    let target = Arc::new(client::Target {
        addr: g.server,
        domain: g.domain.clone(),
        tls: g.tls,
        mech: g.mech,
        password: g.password.clone(),
        connector: client::tls_connector(),
        spread: !g.no_spread && g.server.ip().is_loopback(),
        scram_cache: Mutex::new(cache),
    });
    let ctx = scenarios::Ctx {
        target: target.clone(),
        pid: g.server_pid.map(|p| p.to_string()),
        label: g.label.clone(),
        concurrency: g.concurrency.max(1),
        data_dir: g.data_dir.clone(),
    };
    let result = match cli.command {
        Command::Login { clients } => scenarios::login(&ctx, clients).await,
        Command::Idle { clients, hold } => scenarios::idle(&ctx, clients, hold).await,
        Command::Chat {
            clients,
            window,
            rate,
            warmup,
            duration,
            pad,
            relay,
        } => {
            let opts = scenarios::ChatOpts {
                clients,
                window,
                rate,
                warmup,
                duration,
                pad,
                relay,
            };
            scenarios::chat(&ctx, opts).await
        }
        Command::Roster { clients } => scenarios::roster(&ctx, clients).await,
        Command::Offline {
            messages,
            recipients,
            senders,
        } => scenarios::offline(&ctx, messages, recipients, senders).await,
        Command::Muc {
            occupants,
            senders,
            rate,
            warmup,
            duration,
            pad,
            room,
            service,
            room_config,
            join_timeout,
        } => {
            let service = service.unwrap_or_else(|| format!("conference.{}", g.domain));
            let opts = scenarios::MucOpts {
                occupants,
                senders,
                rate,
                warmup,
                duration,
                pad,
                room: format!("{room}@{service}"),
                room_config,
                join_timeout,
            };
            scenarios::muc(&ctx, opts).await
        }
        Command::RelayServer { listen, cert, key } => {
            return relay::serve(listen, &cert, &key).await
        }
        Command::Accounts {
            format,
            out,
            users,
            roster_users,
            roster_size,
            iterations,
        } => {
            let a = accounts::Accounts {
                domain: g.domain.clone(),
                password: g.password.clone(),
                users,
                roster_users,
                roster_size,
            };
            return match format.as_str() {
                "xep0227" => {
                    std::fs::write(&out, a.xep0227()).map_err(|e| format!("{}: {e}", out.display()))
                }
                "prosody" => a
                    .prosody(&out, iterations)
                    .map_err(|e| format!("{}: {e}", out.display())),
                other => Err(format!("unknown format {other} (xep0227 or prosody)")),
            };
        }
    };
    if let Some(path) = &g.scram_cache {
        if let Ok(m) = target.scram_cache.lock() {
            if let Err(e) = client::save_cache(path, &m) {
                eprintln!("oriole-bench: {}: {e}", path.display());
            }
        }
    }
    result
}
