//! Administration: the account commands behind `oriole user …`, reachable in two ways.
//! sled allows one process per database, so while the server runs the CLI talks to it over
//! a Unix socket in the data folder (mode 0600: only the server's user may use it); when the
//! server is stopped the CLI opens the database itself.
//!
//! The socket protocol is one JSON request line and one JSON response line per connection.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::auth::credentials::{StoredCredentials, DEFAULT_ITERATIONS};
use crate::config::Config;
use crate::jid::Jid;
use crate::server::{check_new_account, ServerState};
use crate::storage::Storage;

/// An administrative request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    UserAdd { jid: String, password: String },
    UserPasswd { jid: String, password: String },
    UserDel { jid: String },
    UserList { domain: String },
}

/// The answer: a message or a list, or an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    pub message: String,
    #[serde(default)]
    pub list: Vec<String>,
}

impl Response {
    fn ok(message: impl Into<String>) -> Response {
        Response {
            ok: true,
            message: message.into(),
            list: Vec::new(),
        }
    }

    fn err(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            message: message.into(),
            list: Vec::new(),
        }
    }
}

/// Path of the admin socket for a configuration.
pub fn socket_path(config: &Config) -> PathBuf {
    config.server.data_dir.join("admin.sock")
}

fn account_jid(s: &str) -> Result<Jid, String> {
    let jid = Jid::parse(s).map_err(|e| format!("{s}: {e}"))?;
    if jid.node().is_none() || jid.is_full() {
        return Err(format!("{s} is not an account address (user@domain)"));
    }
    Ok(jid)
}

/// Carry out a request against a storage backend. `on_delete` closes live sessions.
pub fn execute(
    config: &Config,
    storage: &dyn Storage,
    req: &Request,
    on_delete: &dyn Fn(&Jid),
) -> Response {
    let result: Result<Response, String> = (|| match req {
        Request::UserAdd { jid, password } => {
            let jid = account_jid(jid)?;
            check_new_account(config, &jid, password)?;
            let creds = StoredCredentials::derive(password, DEFAULT_ITERATIONS);
            if storage
                .create_account(&jid.bare_string(), &creds)
                .map_err(|e| e.to_string())?
            {
                Ok(Response::ok(format!("created {jid}")))
            } else {
                Err(format!("{jid} exists already"))
            }
        }
        Request::UserPasswd { jid, password } => {
            let jid = account_jid(jid)?;
            check_new_account(config, &jid, password)?;
            let creds = StoredCredentials::derive(password, DEFAULT_ITERATIONS);
            if storage
                .set_credentials(&jid.bare_string(), &creds)
                .map_err(|e| e.to_string())?
            {
                Ok(Response::ok(format!("password of {jid} changed")))
            } else {
                Err(format!("{jid} does not exist"))
            }
        }
        Request::UserDel { jid } => {
            let jid = account_jid(jid)?;
            if storage
                .delete_account(&jid.bare_string())
                .map_err(|e| e.to_string())?
            {
                on_delete(&jid);
                Ok(Response::ok(format!("deleted {jid}")))
            } else {
                Err(format!("{jid} does not exist"))
            }
        }
        Request::UserList { domain } => {
            let list = storage.list_accounts(domain).map_err(|e| e.to_string())?;
            Ok(Response {
                ok: true,
                message: format!("{} accounts", list.len()),
                list,
            })
        }
    })();
    result.unwrap_or_else(Response::err)
}

/// Start the admin socket of a running server.
pub fn spawn_socket(state: &Arc<ServerState>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(&state.config);
    if path.exists() {
        // Another server on this data folder would hold the database lock, so a socket file
        // that is still here is stale.
        std::fs::remove_file(&path)?;
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let state2 = state.clone();
    state.tasks.spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = state2.shutdown.cancelled() => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let state = state2.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut line = String::new();
                let mut reader = BufReader::new(r).take(64 * 1024);
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let resp = match serde_json::from_str::<Request>(&line) {
                    Ok(req) => {
                        let st = state.clone();
                        tokio::task::spawn_blocking(move || {
                            let st2 = st.clone();
                            execute(&st.config, st.storage.as_ref(), &req, &move |jid| {
                                st2.modules
                                    .emit(&crate::modules::ModuleEvent::AccountDeleted {
                                        account: jid,
                                    });
                                for r in st2.sessions.resources(jid) {
                                    r.handle.close(
                                        crate::proto::StreamError::NotAuthorized,
                                        Some("the account was deleted"),
                                    );
                                }
                            })
                        })
                        .await
                        .unwrap_or_else(|e| Response::err(e.to_string()))
                    }
                    Err(e) => Response::err(format!("bad request: {e}")),
                };
                if let Ok(mut text) = serde_json::to_string(&resp) {
                    text.push('\n');
                    let _ = w.write_all(text.as_bytes()).await;
                }
            });
        }
    });
    Ok(())
}

/// Remove the socket file at shutdown.
pub fn remove_socket(config: &Config) {
    let _ = std::fs::remove_file(socket_path(config));
}

/// Send a request to a running server; `Ok(None)` when no server listens.
pub async fn request(config: &Config, req: &Request) -> Result<Option<Response>, String> {
    let path = socket_path(config);
    let stream = match tokio::net::UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    let (r, mut w) = stream.into_split();
    let mut text = serde_json::to_string(req).map_err(|e| e.to_string())?;
    text.push('\n');
    w.write_all(text.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(r)
        .read_line(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| format!("bad answer from the server: {e}"))
}
