//! Oriole, an XMPP server: one binary, fast, safe, easy to run.
//!
//! # Layout
//! - [`xml`]: the element tree, writer, and the incremental stream parser (bytes in, stream
//!   events out; bounded; restricted XML). No I/O.
//! - [`jid`]: JIDs. [`proto`]: namespaces, stanzas, stanza and stream errors. No I/O.
//! - [`auth`]: SASL mechanisms (SCRAM-SHA-1/256/512 and -PLUS, PLAIN) as pure state machines,
//!   stored SCRAM credentials.
//! - [`transport`]: TLS contexts (per-domain certificates by SNI, self-signed on first start),
//!   listeners and connection limits.
//! - [`c2s`]: the client connection task: negotiation, then the session loop.
//! - [`session`]: the registry of bound resources and their send handles.
//! - [`s2s`]: federation: listeners, outbound links, DNS discovery, TLS, SASL EXTERNAL,
//!   dialback.
//! - [`router`]: RFC 6121 §8 delivery rules. [`im`]: rosters, presence, subscriptions,
//!   offline messages. [`modules`]: everything else, one file per XEP, behind one contract.
//! - [`storage`]: the storage trait, sled and in-memory backends, XEP-0227 export/import.
//! - [`components`]: internal services on subdomains (Multi-User Chat at `conference.<domain>`).
//! - [`server`]: wiring and shutdown. [`admin`]: account commands (CLI and admin socket).
//! - [`config`]: the TOML configuration; `conf/oriole.toml` is its commented example.
//!
//! # The life of a stanza
//! 1. A listener accepts a connection under a [`transport::ConnectionPermit`] and spawns
//!    [`c2s::serve`].
//! 2. Negotiation: stream header, features, STARTTLS (the parser is reset and the socket
//!    becomes TLS), SASL (parser reset again), resource binding; the [`session::SessionRegistry`]
//!    now holds a handle (a bounded channel sender) for the full JID. XEP-0388 SASL2 does
//!    authentication, binding (XEP-0386) or resumption in one exchange without a restart
//!    ([`c2s::sasl2`]).
//! 3. The task loops on `select!` over socket reads, its outbound queue and shutdown.
//! 4. An inbound stanza's `from` is checked and stamped; the modules' [`modules::hooks`] see
//!    it (blocking, archive, carbons); presence goes to [`im::presence`], everything else to
//!    [`router::route`], which runs the hooks again for a stanza about to reach a local
//!    account.
//! 5. The router hands anything addressed to an internal component's domain (e.g.
//!    `conference.<domain>`) to that component; it sends IQs for the server or an account
//!    to the module registry (by payload namespace), messages and presence to the delivery
//!    rules; another domain goes to [`s2s::send`] (queued on that domain's link, or bounced
//!    when federation is off).
//! 6. A handler uses storage and answers with a result or a stanza error; nothing matched
//!    gives `service-unavailable` (never for errors and results).

pub mod admin;
pub mod auth;
pub mod c2s;
pub mod components;
pub mod config;
pub mod im;
pub mod jid;
pub mod modules;
pub mod proto;
pub mod router;
pub mod s2s;
pub mod server;
pub mod session;
pub mod storage;
pub mod transport;
pub mod xml;
