//! The benchmark scenarios: login, idle, chat (closed and open loop, or over the relay),
//! roster, offline and muc (one chatroom's join storm and groupchat fan-out). Each prints a summary and one `RESULT` line.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::client::{self, Conn, LoginOpts, Target};
use crate::framer::{self, Frame};
use crate::metrics::{self, cpu_between, ms, percentiles, CpuSnap};
use crate::relay;

const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Ctx {
    pub target: Arc<Target>,
    pub pid: Option<String>,
    pub label: String,
    pub concurrency: usize,
    pub data_dir: Option<PathBuf>,
}

impl Ctx {
    fn snap(&self) -> CpuSnap {
        CpuSnap::take(self.pid.as_deref())
    }
    fn rss(&self) -> u64 {
        self.pid.as_deref().and_then(metrics::rss_kib).unwrap_or(0)
    }
}

static T0: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the process's time base (the same clock for sender and receiver).
fn now_us() -> u64 {
    T0.get_or_init(Instant::now).elapsed().as_micros() as u64
}

fn result_line(scenario: &str, label: &str, fields: &[(&str, String)]) {
    let mut s = format!("RESULT scenario={scenario} server={label}");
    for (k, v) in fields {
        s.push_str(&format!(" {k}={v}"));
    }
    println!("{s}");
}

fn pct(part: f64, wall: f64) -> String {
    format!("{:.0}", if wall > 0.0 { 100.0 * part / wall } else { 0.0 })
}

/// Runs `f(0..n)` with at most `conc` in flight; returns the results by index and the
/// latency of each success in microseconds.
async fn run_many<T, F, Fut>(n: usize, conc: usize, f: F) -> (Vec<Option<T>>, Vec<u32>, Vec<String>)
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    run_many_within(n, conc, LOGIN_TIMEOUT, f).await
}

/// [`run_many`] with a time limit of its own for each job.
async fn run_many_within<T, F, Fut>(
    n: usize,
    conc: usize,
    limit: Duration,
    f: F,
) -> (Vec<Option<T>>, Vec<u32>, Vec<String>)
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..conc.min(n.max(1)) {
        let f = f.clone();
        let next = next.clone();
        workers.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                let r = match tokio::time::timeout(limit, f(i)).await {
                    Ok(r) => r,
                    Err(_) => Err("timed out".to_string()),
                };
                out.push((i, r, t.elapsed().as_micros() as u32));
            }
            out
        });
    }
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut lat = Vec::with_capacity(n);
    let mut errors = Vec::new();
    while let Some(w) = workers.join_next().await {
        let Ok(out) = w else {
            errors.push("worker panicked".to_string());
            continue;
        };
        for (i, r, l) in out {
            match r {
                Ok(v) => {
                    results[i] = Some(v);
                    lat.push(l);
                }
                Err(e) => errors.push(format!("client {i}: {e}")),
            }
        }
    }
    if let Some(e) = errors.first() {
        eprintln!("{} errors; first: {e}", errors.len());
    }
    (results, lat, errors)
}

/// Benchmark user `u{i}` logs in (TLS, SASL, bind) and sends initial presence.
async fn log_in_user(t: &Target, i: usize) -> Result<Conn, String> {
    client::login(
        t,
        i,
        &format!("u{i}"),
        "bench",
        LoginOpts {
            presence: true,
            roster: false,
        },
    )
    .await
}

/// Users `u0`…`u{n-1}` log in, `ctx.concurrency` at a time, and stay: the connections by
/// index, the login latencies and the errors.
async fn log_in_all(ctx: &Ctx, n: usize) -> (Vec<Option<Conn>>, Vec<u32>, Vec<String>) {
    let t = ctx.target.clone();
    run_many(n, ctx.concurrency, move |i| {
        let t = t.clone();
        async move { log_in_user(&t, i).await }
    })
    .await
}

pub async fn login(ctx: &Ctx, n: usize) -> Result<(), String> {
    let t = ctx.target.clone();
    let a = ctx.snap();
    let (_, lat, errors) = run_many(n, ctx.concurrency, move |i| {
        let t = t.clone();
        async move {
            let c = log_in_user(&t, i).await?;
            c.close().await;
            Ok(())
        }
    })
    .await;
    let b = ctx.snap();
    let u = cpu_between(&a, &b);
    let ok = lat.len();
    let p = percentiles(lat);
    let rate = ok as f64 / u.wall;
    println!(
        "login {}: {ok}/{n} ok in {:.2}s = {rate:.0} logins/s, p50 {} ms, p99 {} ms; server CPU {:.2} ms/login; generator {}% CPU, others {}%",
        ctx.label,
        u.wall,
        ms(p.p50),
        ms(p.p99),
        1000.0 * u.server / ok.max(1) as f64,
        pct(u.me, u.wall),
        pct(u.other, u.wall)
    );
    result_line(
        "login",
        &ctx.label,
        &[
            ("clients", n.to_string()),
            ("ok", ok.to_string()),
            ("errors", errors.len().to_string()),
            ("logins_s", format!("{rate:.0}")),
            ("p50_ms", ms(p.p50)),
            ("p99_ms", ms(p.p99)),
            (
                "server_cpu_ms_per_login",
                format!("{:.3}", 1000.0 * u.server / ok.max(1) as f64),
            ),
            ("server_cpu_pct", pct(u.server, u.wall)),
            ("gen_cpu_pct", pct(u.me, u.wall)),
            ("other_cpu_pct", pct(u.other, u.wall)),
        ],
    );
    Ok(())
}

pub async fn idle(ctx: &Ctx, n: usize, hold: u64) -> Result<(), String> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = ctx.rss();
    let slab0 = metrics::slab_kib().unwrap_or(0);
    let me0 = metrics::rss_kib("self").unwrap_or(0);
    let a = ctx.snap();
    let (conns, lat, errors) = log_in_all(ctx, n).await;
    let b = ctx.snap();
    let ok = lat.len();
    let setup = cpu_between(&a, &b);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = ctx.rss();
    let slab1 = metrics::slab_kib().unwrap_or(0);
    let me1 = metrics::rss_kib("self").unwrap_or(0);
    let c = ctx.snap();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let d = ctx.snap();
    let idle = cpu_between(&c, &d);
    let rss_end = ctx.rss();
    let per = |x: u64, y: u64| (y.saturating_sub(x)) as f64 / ok.max(1) as f64;
    println!(
        "idle {}: {ok}/{n} sessions (setup {:.1}s, {:.0} logins/s); server RSS {} -> {} KiB = {:.1} KiB/session \
         (after {hold}s: {} KiB); kernel slab {:.1} KiB/connection (both ends); generator {:.1} KiB/session; \
         idle server CPU {:.2}% over {hold}s",
        ctx.label,
        setup.wall,
        ok as f64 / setup.wall,
        rss0,
        rss1,
        per(rss0, rss1),
        rss_end,
        per(slab0, slab1),
        per(me0, me1),
        100.0 * idle.server / idle.wall
    );
    result_line(
        "idle",
        &ctx.label,
        &[
            ("clients", n.to_string()),
            ("ok", ok.to_string()),
            ("errors", errors.len().to_string()),
            ("rss_base_kib", rss0.to_string()),
            ("rss_kib", rss1.to_string()),
            ("kib_per_session", format!("{:.1}", per(rss0, rss1))),
            ("slab_kib_per_conn", format!("{:.1}", per(slab0, slab1))),
            ("gen_kib_per_session", format!("{:.1}", per(me0, me1))),
            (
                "idle_server_cpu_pct",
                format!("{:.2}", 100.0 * idle.server / idle.wall),
            ),
            ("setup_logins_s", format!("{:.0}", ok as f64 / setup.wall)),
        ],
    );
    let mut closing = tokio::task::JoinSet::new();
    for c in conns.into_iter().flatten() {
        closing.spawn(c.close());
    }
    while closing.join_next().await.is_some() {}
    Ok(())
}

pub struct ChatOpts {
    pub clients: usize,
    pub window: usize,
    pub rate: f64,
    pub warmup: u64,
    pub duration: u64,
    pub pad: usize,
    pub relay: bool,
}

struct ChatShared {
    window: usize,
    /// Messages per second per client (open loop), 0 for closed loop.
    rate: f64,
    pad: String,
    win_start: AtomicU64,
    win_end: AtomicU64,
}

#[derive(Default)]
struct ChatStats {
    sent: u64,
    recv: u64,
    recv_window: u64,
    lat: Vec<u32>,
    errors: u64,
}

fn push_msg(out: &mut Vec<u8>, to: &str, pad: &str) {
    out.extend_from_slice(
        format!(
            "<message to='{to}' type='chat'><body>{} {pad}</body></message>",
            now_us()
        )
        .as_bytes(),
    );
}

fn body_ts(el: &[u8]) -> Option<u64> {
    let body = framer::between(el, "<body>", " ")?;
    std::str::from_utf8(body).ok()?.parse().ok()
}

async fn chat_task(
    mut c: Conn,
    to: String,
    initiator: bool,
    sh: Arc<ChatShared>,
    mut phase: watch::Receiver<u8>,
) -> ChatStats {
    let mut st = ChatStats::default();
    while *phase.borrow() < 1 {
        if phase.changed().await.is_err() {
            return st;
        }
    }
    let closed = sh.rate <= 0.0;
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    let mut iv = if closed {
        None
    } else {
        let period = Duration::from_secs_f64(1.0 / sh.rate);
        let offset = period.mul_f64(rand::random::<f64>());
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        Some(i)
    };
    if closed && initiator {
        for _ in 0..sh.window {
            push_msg(&mut out, &to, &sh.pad);
            st.sent += 1;
        }
        if c.io.write_all(&out).await.is_err() || c.io.flush().await.is_err() {
            st.errors += 1;
            return st;
        }
        out.clear();
    }
    let mut sending = true;
    let mut buf = vec![0u8; 32 * 1024];
    'outer: loop {
        tokio::select! {
            r = c.io.read(&mut buf) => {
                // Once sending has stopped, the partner closing first is not an error.
                let n = match r {
                    Ok(0) | Err(_) => { st.errors += u64::from(sending); break; }
                    Ok(n) => n,
                };
                c.framer.feed(&buf[..n]);
                let now = now_us();
                let ws = sh.win_start.load(Ordering::Relaxed);
                let we = sh.win_end.load(Ordering::Relaxed);
                while let Some(f) = c.framer.next_frame() {
                    match f {
                        Frame::Element(r) => {
                            let el = c.framer.get(r);
                            if framer::local_name(el) != b"message" {
                                continue;
                            }
                            let Some(ts) = body_ts(el) else { continue };
                            st.recv += 1;
                            if now >= ws && now < we {
                                st.recv_window += 1;
                                st.lat.push(now.saturating_sub(ts).min(u32::MAX as u64) as u32);
                            }
                            if closed && sending {
                                push_msg(&mut out, &to, &sh.pad);
                                st.sent += 1;
                            }
                        }
                        Frame::End => { st.errors += u64::from(sending); break 'outer; }
                        Frame::Header => {}
                    }
                }
                if !out.is_empty() {
                    if c.io.write_all(&out).await.is_err() || c.io.flush().await.is_err() {
                        st.errors += 1;
                        break;
                    }
                    out.clear();
                }
            }
            _ = async { match iv.as_mut() { Some(i) => { i.tick().await; } None => std::future::pending::<()>().await } }, if sending => {
                push_msg(&mut out, &to, &sh.pad);
                st.sent += 1;
                if c.io.write_all(&out).await.is_err() || c.io.flush().await.is_err() {
                    st.errors += 1;
                    break;
                }
                out.clear();
            }
            ch = phase.changed() => {
                if ch.is_err() { break; }
                let p = *phase.borrow();
                if p >= 2 { sending = false; }
                if p >= 3 { break; }
            }
        }
    }
    c.close().await;
    st
}

pub async fn chat(ctx: &Ctx, o: ChatOpts) -> Result<(), String> {
    let n = o.clients - o.clients % 2;
    if n == 0 {
        return Err("chat needs at least 2 clients".into());
    }
    let t = ctx.target.clone();
    let relay_mode = o.relay;
    let (conns, _, errors) = run_many(n, ctx.concurrency, move |i| {
        let t = t.clone();
        async move {
            if relay_mode {
                relay::connect(&t, i, (i / 2) as u64).await
            } else {
                log_in_user(&t, i).await
            }
        }
    })
    .await;
    if !errors.is_empty() {
        return Err(format!("{} clients failed to connect", errors.len()));
    }
    let conns: Vec<Conn> = conns.into_iter().flatten().collect();
    let jids: Vec<String> = conns.iter().map(|c| c.jid.clone()).collect();
    let sh = Arc::new(ChatShared {
        window: o.window.max(1),
        rate: if o.rate > 0.0 { o.rate / n as f64 } else { 0.0 },
        pad: "x".repeat(o.pad),
        win_start: AtomicU64::new(u64::MAX),
        win_end: AtomicU64::new(u64::MAX),
    });
    let (tx, rx) = watch::channel(0u8);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, c) in conns.into_iter().enumerate() {
        let partner = jids[i ^ 1].clone();
        tasks.spawn(chat_task(c, partner, i % 2 == 0, sh.clone(), rx.clone()));
    }
    let start = now_us();
    let ws = start + o.warmup * 1_000_000;
    let we = ws + o.duration * 1_000_000;
    sh.win_start.store(ws, Ordering::Relaxed);
    sh.win_end.store(we, Ordering::Relaxed);
    let _ = tx.send(1);
    tokio::time::sleep(Duration::from_secs(o.warmup)).await;
    let a = ctx.snap();
    tokio::time::sleep(Duration::from_secs(o.duration)).await;
    let b = ctx.snap();
    let _ = tx.send(2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = tx.send(3);
    let mut total = ChatStats::default();
    let mut lat = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(s) = r {
            total.sent += s.sent;
            total.recv += s.recv;
            total.recv_window += s.recv_window;
            total.errors += s.errors;
            lat.extend(s.lat);
        }
    }
    let u = cpu_between(&a, &b);
    let p = percentiles(lat);
    let rate = total.recv_window as f64 / u.wall;
    let lost = total.sent.saturating_sub(total.recv);
    let mode = if o.rate > 0.0 {
        format!("open {:.0}/s", o.rate)
    } else {
        format!("closed w{}", sh.window)
    };
    let cpu_us = 1e6 * u.server / total.recv_window.max(1) as f64;
    println!(
        "chat {} ({mode}, {n} clients): {rate:.0} msgs/s delivered, latency p50 {} p99 {} max {} ms, \
         lost {lost} of {}, server {:.2} µs CPU/msg ({}%), generator {}% CPU, others {}%",
        ctx.label,
        ms(p.p50),
        ms(p.p99),
        ms(p.max),
        total.sent,
        cpu_us,
        pct(u.server, u.wall),
        pct(u.me, u.wall),
        pct(u.other, u.wall)
    );
    let scenario = if o.rate > 0.0 {
        "chat-open"
    } else {
        "chat-closed"
    };
    result_line(
        scenario,
        &ctx.label,
        &[
            ("clients", n.to_string()),
            ("mode", mode.replace(' ', "_")),
            ("msgs_s", format!("{rate:.0}")),
            ("p50_ms", ms(p.p50)),
            ("p99_ms", ms(p.p99)),
            ("max_ms", ms(p.max)),
            ("samples", p.count.to_string()),
            ("cdf_ms", p.cdf.clone()),
            ("sent", total.sent.to_string()),
            ("lost", lost.to_string()),
            ("errors", total.errors.to_string()),
            ("server_cpu_us_per_msg", format!("{cpu_us:.2}")),
            ("server_cpu_pct", pct(u.server, u.wall)),
            ("gen_cpu_pct", pct(u.me, u.wall)),
            ("other_cpu_pct", pct(u.other, u.wall)),
        ],
    );
    Ok(())
}

pub async fn roster(ctx: &Ctx, n: usize) -> Result<(), String> {
    let t = ctx.target.clone();
    let bytes = Arc::new(AtomicU64::new(0));
    let b2 = bytes.clone();
    let a = ctx.snap();
    let (_, lat, errors) = run_many(n, ctx.concurrency, move |i| {
        let t = t.clone();
        let bytes = b2.clone();
        async move {
            let c = client::login(
                &t,
                i,
                &format!("r{i}"),
                "bench",
                LoginOpts {
                    presence: true,
                    roster: true,
                },
            )
            .await?;
            bytes.fetch_add(c.bytes_in, Ordering::Relaxed);
            c.close().await;
            Ok(())
        }
    })
    .await;
    let b = ctx.snap();
    let u = cpu_between(&a, &b);
    let ok = lat.len();
    let p = percentiles(lat);
    let rate = ok as f64 / u.wall;
    let cpu_ms = 1000.0 * u.server / ok.max(1) as f64;
    println!(
        "roster {}: {ok}/{n} logins with roster in {:.2}s = {rate:.1}/s, p50 {} ms, p99 {} ms, server {cpu_ms:.2} ms CPU/login, \
         {:.0} bytes in per login",
        ctx.label,
        u.wall,
        ms(p.p50),
        ms(p.p99),
        bytes.load(Ordering::Relaxed) as f64 / ok.max(1) as f64
    );
    result_line(
        "roster",
        &ctx.label,
        &[
            ("clients", n.to_string()),
            ("ok", ok.to_string()),
            ("errors", errors.len().to_string()),
            ("logins_s", format!("{rate:.1}")),
            ("p50_ms", ms(p.p50)),
            ("p99_ms", ms(p.p99)),
            ("server_cpu_ms_per_login", format!("{cpu_ms:.2}")),
            ("gen_cpu_pct", pct(u.me, u.wall)),
            ("other_cpu_pct", pct(u.other, u.wall)),
        ],
    );
    Ok(())
}

fn du_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        if md.is_dir() {
            total += du_bytes(&e.path());
        } else {
            total += md.len();
        }
    }
    total
}

pub async fn offline(
    ctx: &Ctx,
    messages: usize,
    recipients: usize,
    senders: usize,
) -> Result<(), String> {
    let recipients = recipients.max(1);
    let senders = senders.max(1);
    let per_rcpt = messages / recipients;
    let messages = per_rcpt * recipients;
    let domain = ctx.target.domain.clone();
    let disk0 = ctx.data_dir.as_deref().map(du_bytes).unwrap_or(0);
    // Store: senders u0… send to bare JIDs u<senders>… (offline), with a ping every 500
    // messages so that nothing piles up unacknowledged in the generator.
    let t = ctx.target.clone();
    let a = ctx.snap();
    let d2 = domain.clone();
    // Messages whose batch the server acknowledged (its ping reply came after them): what a
    // server that does not finish did store.
    let acked = Arc::new(AtomicU64::new(0));
    let acked2 = acked.clone();
    // A sender's job is its whole share of the messages: no overall limit, but each ping
    // reply must come within LOGIN_TIMEOUT.
    let (_, _, errors) = run_many_within(senders, senders, Duration::from_secs(24 * 3600), move |s| {
        let t = t.clone();
        let domain = d2.clone();
        let acked = acked2.clone();
        async move {
            let mut c = client::login(&t, s, &format!("u{s}"), "bench", LoginOpts { presence: false, roster: false }).await?;
            let mut out = String::new();
            let mut batch = 0;
            let mut j = s;
            while j < messages {
                let rcpt = senders + j % recipients;
                out.push_str(&format!(
                    "<message to='u{rcpt}@{domain}' type='chat'><body>{} offline message {j}</body></message>",
                    now_us()
                ));
                batch += 1;
                j += senders;
                if batch == 500 || j >= messages {
                    out.push_str(&format!("<iq type='get' id='p{j}' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>"));
                    c.send(&out).await?;
                    out.clear();
                    tokio::time::timeout(LOGIN_TIMEOUT, c.reply(&format!("p{j}")))
                        .await
                        .map_err(|_| format!("no ping reply within {LOGIN_TIMEOUT:?}"))??;
                    acked.fetch_add(batch, Ordering::Relaxed);
                    batch = 0;
                }
            }
            c.close().await;
            Ok(())
        }
    })
    .await;
    let b = ctx.snap();
    let store = cpu_between(&a, &b);
    if !errors.is_empty() {
        // No result row (the scenario did not complete), but what the server did store
        // before a sender gave up is worth printing.
        let done = acked.load(Ordering::Relaxed);
        println!(
            "offline {}: store did not finish: {done} of {messages} messages acknowledged in {:.2}s \
             = {:.0} msgs/s (server {:.1} µs CPU/msg), then {} of {senders} senders failed",
            ctx.label,
            store.wall,
            done as f64 / store.wall,
            1e6 * store.server / done.max(1) as f64,
            errors.len()
        );
        return Err(format!("{} senders failed", errors.len()));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let disk1 = ctx.data_dir.as_deref().map(du_bytes).unwrap_or(0);
    // Deliver: each recipient logs in, sends presence and counts messages.
    let t = ctx.target.clone();
    let got = Arc::new(AtomicU64::new(0));
    let g2 = got.clone();
    let c0 = ctx.snap();
    let (_, _, derrors) = run_many_within(
        recipients,
        ctx.concurrency,
        Duration::from_secs(24 * 3600),
        move |r| {
            let t = t.clone();
            let got = g2.clone();
            async move {
                let i = senders + r;
                let mut c = client::login(
                    &t,
                    i,
                    &format!("u{i}"),
                    "bench",
                    LoginOpts {
                        presence: false,
                        roster: false,
                    },
                )
                .await?;
                c.send("<presence/>").await?;
                let mut n = 0usize;
                while n < per_rcpt {
                    let el = match tokio::time::timeout(Duration::from_secs(10), c.element()).await
                    {
                        Ok(r) => r?,
                        Err(_) => return Err(format!("got {n} of {per_rcpt} offline messages")),
                    };
                    if framer::local_name(&el) == b"message"
                        && framer::find(&el, b"offline message").is_some()
                    {
                        n += 1;
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                }
                c.close().await;
                Ok(())
            }
        },
    )
    .await;
    let d = ctx.snap();
    let deliver = cpu_between(&c0, &d);
    let delivered = got.load(Ordering::Relaxed);
    let disk = if ctx.data_dir.is_some() {
        format!(
            "{:.0}",
            disk1.saturating_sub(disk0) as f64 / messages.max(1) as f64
        )
    } else {
        "-".into()
    };
    println!(
        "offline {}: stored {messages} in {:.2}s = {:.0} msgs/s (server {:.1} µs CPU/msg, disk +{disk} B/msg); \
         delivered {delivered} in {:.2}s = {:.0} msgs/s (server {:.1} µs CPU/msg); {} delivery errors",
        ctx.label,
        store.wall,
        messages as f64 / store.wall,
        1e6 * store.server / messages.max(1) as f64,
        deliver.wall,
        delivered as f64 / deliver.wall,
        1e6 * deliver.server / delivered.max(1) as f64,
        derrors.len()
    );
    result_line(
        "offline",
        &ctx.label,
        &[
            ("messages", messages.to_string()),
            (
                "store_msgs_s",
                format!("{:.0}", messages as f64 / store.wall),
            ),
            (
                "store_cpu_us_per_msg",
                format!("{:.1}", 1e6 * store.server / messages.max(1) as f64),
            ),
            ("disk_b_per_msg", disk),
            ("delivered", delivered.to_string()),
            (
                "deliver_msgs_s",
                format!("{:.0}", delivered as f64 / deliver.wall),
            ),
            (
                "deliver_cpu_us_per_msg",
                format!("{:.1}", 1e6 * deliver.server / delivered.max(1) as f64),
            ),
            ("errors", derrors.len().to_string()),
            (
                "gen_cpu_pct",
                pct(store.me + deliver.me, store.wall + deliver.wall),
            ),
        ],
    );
    Ok(())
}

/// Options of the MUC fan-out scenario.
pub struct MucOpts {
    pub occupants: usize,
    pub senders: usize,
    /// Total groupchat messages per second over all senders (open loop).
    pub rate: f64,
    pub warmup: u64,
    pub duration: u64,
    pub pad: usize,
    /// The room's bare JID.
    pub room: String,
    /// Extra `var=value` fields of the owner form the creator submits (instant room if none).
    pub room_config: Vec<String>,
    /// Seconds to wait for all joins and for the join presences to arrive.
    pub join_timeout: u64,
}

/// Phases of the MUC scenario (a `watch` value).
const MUC_JOIN: u8 = 1;
const MUC_SEND: u8 = 2;
const MUC_DRAIN: u8 = 3;
const MUC_END: u8 = 4;
/// How long the occupants wait for the last messages after sending stops.
const DRAIN_SECS: u64 = 30;

struct MucShared {
    room: String,
    /// Each sender's messages per second.
    rate: f64,
    pad: String,
    join_slots: tokio::sync::Semaphore,
    joined: AtomicUsize,
    join_errors: AtomicUsize,
    /// Occupant presences from the room, over all clients.
    presences: AtomicU64,
    sent: AtomicU64,
    delivered: AtomicU64,
    win_start: AtomicU64,
    win_end: AtomicU64,
    /// Senders that will send nothing more (they saw the drain phase, or ended).
    stopped: AtomicUsize,
    /// Set once the drain has been judged; messages counted after it are `late` (a check
    /// that the accounting of `sent` is sound: always 0).
    judged: AtomicBool,
    late: AtomicU64,
}

impl MucShared {
    fn new(room: String, rate: f64, pad: String, concurrency: usize) -> MucShared {
        MucShared {
            room,
            rate,
            pad,
            join_slots: tokio::sync::Semaphore::new(concurrency),
            joined: AtomicUsize::new(1),
            join_errors: AtomicUsize::new(0),
            presences: AtomicU64::new(1),
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            win_start: AtomicU64::new(u64::MAX),
            win_end: AtomicU64::new(u64::MAX),
            stopped: AtomicUsize::new(0),
            judged: AtomicBool::new(false),
            late: AtomicU64::new(0),
        }
    }

    /// Every sender has stopped and all `joined` occupants received everything sent.
    fn drained(&self, senders: usize, joined: u64) -> bool {
        // `stopped` first: once it reaches `senders`, `sent` is final.
        self.stopped.load(Ordering::SeqCst) >= senders
            && self.delivered.load(Ordering::Relaxed) >= self.sent.load(Ordering::SeqCst) * joined
    }
}

/// A sender's promise to count itself in [`MucShared::stopped`] once: when it stops sending,
/// or when it ends for any other reason (drop).
struct SenderStop<'a>(Option<&'a AtomicUsize>);

impl SenderStop<'_> {
    fn stop(&mut self) {
        if let Some(c) = self.0.take() {
            // SeqCst: the sender's last `sent` increment is visible to whoever sees this.
            c.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for SenderStop<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Default)]
struct MucStats {
    /// Groupchat messages this occupant received (all phases).
    recv: u64,
    sent_window: u64,
    recv_window: u64,
    lat: Vec<u32>,
    join_us: Option<u32>,
    errors: u64,
    first_error: Option<String>,
}

fn join_presence(room: &str, nick: &str) -> String {
    format!(
        "<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'>\
         <history maxstanzas='0'/></x></presence>"
    )
}

fn has_status(el: &[u8], code: &str) -> bool {
    framer::find(el, format!("code='{code}'").as_bytes()).is_some()
        || framer::find(el, format!("code=\"{code}\"").as_bytes()).is_some()
}

/// The owner form: an instant room (XEP-0045 §10.1.2), or a submitted configuration with
/// the given `var=value` fields.
fn owner_form(room: &str, fields: &[String]) -> String {
    let mut x = String::from("<x xmlns='jabber:x:data' type='submit'>");
    if !fields.is_empty() {
        x.push_str(
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>",
        );
        for f in fields {
            let (var, value) = f.split_once('=').unwrap_or((f.as_str(), ""));
            x.push_str(&format!(
                "<field var='{}'><value>{}</value></field>",
                xml_escape(var),
                xml_escape(value)
            ));
        }
    }
    x.push_str("</x>");
    format!(
        "<iq type='set' id='muc-owner' to='{room}'>\
         <query xmlns='http://jabber.org/protocol/muc#owner'>{x}</query></iq>"
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

/// The first client creates the room: joins, and when the room answers 201 (new, locked),
/// submits the owner form and waits for the result.
async fn muc_create(c: &mut Conn, room: &str, nick: &str, fields: &[String]) -> Result<(), String> {
    c.send(&join_presence(room, nick)).await?;
    let me = format!("{room}/{nick}");
    loop {
        let el = c.element().await?;
        if framer::local_name(&el) != b"presence" || framer::attr(&el, "from") != Some(me.as_str())
        {
            continue;
        }
        if framer::attr(&el, "type") == Some("error") {
            return Err(format!(
                "joining {room} failed: {}",
                String::from_utf8_lossy(&el)
            ));
        }
        if has_status(&el, "201") {
            c.send(&owner_form(room, fields)).await?;
            c.reply("muc-owner").await?;
        }
        return Ok(());
    }
}

async fn muc_task(
    mut c: Conn,
    i: usize,
    joined: bool,
    sender: bool,
    sh: Arc<MucShared>,
    mut phase: watch::Receiver<u8>,
) -> MucStats {
    let mut st = MucStats::default();
    let mut stop = SenderStop(sender.then_some(&sh.stopped));
    let nick = format!("u{i}");
    let me = format!("{}/{nick}", sh.room);
    let room_prefix = format!("{}/", sh.room);
    let fail = |st: &mut MucStats, e: String| {
        st.errors += 1;
        if st.first_error.is_none() {
            st.first_error = Some(e);
        }
    };
    while *phase.borrow() < MUC_JOIN {
        if phase.changed().await.is_err() {
            return st;
        }
    }
    let mut permit = None;
    let mut join_t = Instant::now();
    if !joined {
        match sh.join_slots.acquire().await {
            Ok(p) => permit = Some(p),
            Err(_) => return st,
        }
        join_t = Instant::now();
        if c.send(&join_presence(&sh.room, &nick)).await.is_err() {
            fail(&mut st, "write failed".into());
            sh.join_errors.fetch_add(1, Ordering::Relaxed);
            return st;
        }
    }
    // The senders' clock starts with the message phase (an earlier start would burst).
    let mut iv: Option<tokio::time::Interval> = None;
    let mut sending = false;
    let mut buf = vec![0u8; 32 * 1024];
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    'outer: loop {
        tokio::select! {
            r = c.io.read(&mut buf) => {
                let n = match r {
                    Ok(0) | Err(_) => { fail(&mut st, "connection closed by the server".into()); break; }
                    Ok(n) => n,
                };
                c.framer.feed(&buf[..n]);
                let now = now_us();
                let ws = sh.win_start.load(Ordering::Relaxed);
                let we = sh.win_end.load(Ordering::Relaxed);
                let mut got = 0u64;
                let mut pres = 0u64;
                while let Some(f) = c.framer.next_frame() {
                    let r = match f {
                        Frame::Element(r) => r,
                        Frame::End => { fail(&mut st, "stream closed by the server".into()); break 'outer; }
                        Frame::Header => continue,
                    };
                    let el = c.framer.get(r);
                    match framer::local_name(el) {
                        b"message" => {
                            if framer::attr(el, "type") == Some("error") {
                                fail(&mut st, String::from_utf8_lossy(el).chars().take(300).collect());
                                continue;
                            }
                            let Some(ts) = body_ts(el) else { continue };
                            got += 1;
                            st.recv += 1;
                            if now >= ws && now < we {
                                st.recv_window += 1;
                                st.lat.push(now.saturating_sub(ts).min(u32::MAX as u64) as u32);
                            }
                        }
                        b"presence" => {
                            let from = framer::attr(el, "from").unwrap_or("");
                            if !from.starts_with(&room_prefix) {
                                continue;
                            }
                            if framer::attr(el, "type") == Some("error") {
                                fail(&mut st, String::from_utf8_lossy(el).chars().take(300).collect());
                                if permit.take().is_some() {
                                    sh.join_errors.fetch_add(1, Ordering::Relaxed);
                                }
                                continue;
                            }
                            pres += 1;
                            if from == me && permit.is_some() && has_status(el, "110") {
                                permit = None;
                                st.join_us = Some(join_t.elapsed().as_micros() as u32);
                                sh.joined.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {}
                    }
                }
                if got > 0 {
                    sh.delivered.fetch_add(got, Ordering::Relaxed);
                }
                if pres > 0 {
                    sh.presences.fetch_add(pres, Ordering::Relaxed);
                }
            }
            _ = async { match iv.as_mut() { Some(i) => { i.tick().await; } None => std::future::pending::<()>().await } }, if sending => {
                out.clear();
                let now = now_us();
                out.extend_from_slice(
                    format!(
                        "<message to='{}' type='groupchat'><body>{now} {}</body></message>",
                        sh.room, sh.pad
                    )
                    .as_bytes(),
                );
                if c.io.write_all(&out).await.is_err() || c.io.flush().await.is_err() {
                    fail(&mut st, "write failed".into());
                    break;
                }
                sh.sent.fetch_add(1, Ordering::SeqCst);
                if sh.judged.load(Ordering::SeqCst) {
                    sh.late.fetch_add(1, Ordering::Relaxed);
                }
                if now >= sh.win_start.load(Ordering::Relaxed) && now < sh.win_end.load(Ordering::Relaxed) {
                    st.sent_window += 1;
                }
            }
            ch = phase.changed() => {
                if ch.is_err() { break; }
                let p = *phase.borrow();
                sending = p == MUC_SEND;
                if p >= MUC_DRAIN {
                    // Nothing more from this sender: the drain may now be judged complete.
                    stop.stop();
                }
                if sending && sender && sh.rate > 0.0 && iv.is_none() {
                    let period = Duration::from_secs_f64(1.0 / sh.rate);
                    let offset = period.mul_f64(rand::random::<f64>());
                    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
                    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    iv = Some(i);
                }
                if p >= MUC_END { break; }
            }
        }
    }
    c.close().await;
    st
}

/// Waits until `done()` or `limit` passes; true when done.
async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !done() {
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

pub async fn muc(ctx: &Ctx, o: MucOpts) -> Result<(), String> {
    let n = o.occupants;
    if n < 2 {
        return Err("muc needs at least 2 occupants".into());
    }
    let senders = o.senders.clamp(1, n);
    let (conns, _, errors) = log_in_all(ctx, n).await;
    if !errors.is_empty() {
        return Err(format!("{} clients failed to log in", errors.len()));
    }
    let mut conns: Vec<Conn> = conns.into_iter().flatten().collect();
    let sh = Arc::new(MucShared::new(
        o.room.clone(),
        o.rate / senders as f64,
        "x".repeat(o.pad),
        ctx.concurrency,
    ));
    // Join phase: the creator, then everyone else with `concurrency` joins in flight.
    let rss0 = ctx.rss();
    let a = ctx.snap();
    let create_t = Instant::now();
    tokio::time::timeout(
        LOGIN_TIMEOUT,
        muc_create(&mut conns[0], &o.room, "u0", &o.room_config),
    )
    .await
    .map_err(|_| "creating the room timed out".to_string())??;
    let create_us = create_t.elapsed().as_micros() as u32;
    let (tx, rx) = watch::channel(0u8);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, c) in conns.into_iter().enumerate() {
        tasks.spawn(muc_task(c, i, i == 0, i < senders, sh.clone(), rx.clone()));
    }
    let _ = tx.send(MUC_JOIN);
    let limit = Duration::from_secs(o.join_timeout);
    let sh2 = sh.clone();
    let all_joined = wait_until(limit, move || {
        sh2.joined.load(Ordering::Relaxed) + sh2.join_errors.load(Ordering::Relaxed) >= n
    })
    .await;
    let joined_at = ctx.snap();
    // Joins completed within the limit (the rate's numerator; later joins still count as
    // occupants).
    let joined_in_time = sh.joined.load(Ordering::Relaxed);
    // Every occupant ends with one presence per occupant: N² in all.
    let expected_presences = (n * n) as u64;
    let sh2 = sh.clone();
    let settled = wait_until(limit, move || {
        sh2.presences.load(Ordering::Relaxed) >= expected_presences
    })
    .await;
    let b = ctx.snap();
    let rss_joined = ctx.rss();
    let joined = sh.joined.load(Ordering::Relaxed);
    let presences = sh.presences.load(Ordering::Relaxed);
    let join_phase = cpu_between(&a, &b);
    let join_wall = joined_at.at.duration_since(a.at).as_secs_f64();
    if !all_joined || joined < n {
        eprintln!(
            "muc: {joined_in_time}/{n} joined within {}s, {joined} in the end ({} join errors)",
            o.join_timeout,
            sh.join_errors.load(Ordering::Relaxed)
        );
    }
    if !settled {
        eprintln!("muc: {presences} of {expected_presences} join presences within the time limit");
    }
    // Message phase: open loop from the senders, everyone counts what the room reflects.
    let start = now_us();
    let ws = start + o.warmup * 1_000_000;
    let we = ws + o.duration * 1_000_000;
    sh.win_start.store(ws, Ordering::Relaxed);
    sh.win_end.store(we, Ordering::Relaxed);
    let _ = tx.send(MUC_SEND);
    tokio::time::sleep(Duration::from_secs(o.warmup)).await;
    let c0 = ctx.snap();
    tokio::time::sleep(Duration::from_secs(o.duration)).await;
    let d = ctx.snap();
    let _ = tx.send(MUC_DRAIN);
    let rss_end = ctx.rss();
    let sh2 = sh.clone();
    let joined_n = joined as u64;
    // The drain is complete once every sender has stopped and everything they sent arrived.
    // Judged before all senders stopped, a message written as the drain began (a tick
    // serviced before the phase change) would be counted as sent after every client had
    // already quit: one message "lost" for every occupant, with no error anywhere.
    let drained = wait_until(Duration::from_secs(DRAIN_SECS), move || {
        sh2.drained(senders, joined_n)
    })
    .await;
    sh.judged.store(true, Ordering::SeqCst);
    if sh.stopped.load(Ordering::SeqCst) < senders {
        eprintln!(
            "muc: {} of {senders} senders stopped within {DRAIN_SECS} s of drain",
            sh.stopped.load(Ordering::SeqCst)
        );
    }
    if !drained {
        eprintln!(
            "muc: after {DRAIN_SECS} s of drain, {} of {} deliveries",
            sh.delivered.load(Ordering::Relaxed),
            sh.sent.load(Ordering::Relaxed) * joined_n
        );
    }
    let _ = tx.send(MUC_END);
    let mut total = MucStats::default();
    let mut join_lat = vec![create_us];
    let mut first_error = None;
    let (mut recv_min, mut recv_max) = (u64::MAX, 0);
    while let Some(r) = tasks.join_next().await {
        if let Ok(s) = r {
            recv_min = recv_min.min(s.recv);
            recv_max = recv_max.max(s.recv);
            total.sent_window += s.sent_window;
            total.recv_window += s.recv_window;
            total.errors += s.errors;
            total.lat.extend(s.lat);
            join_lat.extend(s.join_us);
            if first_error.is_none() {
                first_error = s.first_error;
            }
        }
    }
    if let Some(e) = &first_error {
        eprintln!("muc: {} errors; first: {e}", total.errors);
    }
    let sent = sh.sent.load(Ordering::Relaxed);
    let delivered = sh.delivered.load(Ordering::Relaxed);
    // Everyone who joined receives every message, the sender its own copy too.
    let expected = sent * joined_n;
    let lost = expected.saturating_sub(delivered);
    let late = sh.late.load(Ordering::Relaxed);
    if late > 0 {
        eprintln!("muc: {late} messages were counted as sent after the drain was judged complete");
    }
    if lost > 0 {
        eprintln!(
            "muc: {sent} sent; each occupant received between {recv_min} and {recv_max} of them"
        );
    }
    let u = cpu_between(&c0, &d);
    let jp = percentiles(join_lat);
    let p = percentiles(total.lat);
    let joins_s = joined_in_time as f64 / join_wall.max(1e-9);
    let join_cpu_us = 1e6 * join_phase.server / joined.max(1) as f64;
    let pres_cpu_us = 1e6 * join_phase.server / presences.max(1) as f64;
    let deliveries_s = total.recv_window as f64 / u.wall;
    let sent_s = total.sent_window as f64 / u.wall;
    let cpu_per_delivery = 1e6 * u.server / total.recv_window.max(1) as f64;
    let cpu_per_sent = 1e6 * u.server / total.sent_window.max(1) as f64;
    let errors = total.errors + (n - joined.min(n)) as u64;
    println!(
        "muc {} ({n} occupants): joins {joined}/{n} in {join_wall:.2}s = {joins_s:.0}/s (p50 {} p99 {} ms), \
         presences settled after {:.2}s ({presences} of {expected_presences}), server {join_cpu_us:.0} µs CPU/join \
         ({pres_cpu_us:.2} µs per presence delivered); messages: {senders} senders at {:.0}/s, {sent_s:.0} sent/s, \
         {deliveries_s:.0} deliveries/s, latency p50 {} p99 {} max {} ms, lost {lost} of {expected}, \
         server {cpu_per_delivery:.2} µs CPU/delivery, {cpu_per_sent:.0} µs CPU/sent message ({}%), \
         RSS {rss0} -> {rss_joined} -> {rss_end} KiB, generator {}% CPU, others {}%",
        ctx.label,
        ms(jp.p50),
        ms(jp.p99),
        join_phase.wall,
        o.rate,
        ms(p.p50),
        ms(p.p99),
        ms(p.max),
        pct(u.server, u.wall),
        pct(u.me, u.wall),
        pct(u.other, u.wall)
    );
    result_line(
        &format!("muc-{n}"),
        &ctx.label,
        &[
            ("occupants", n.to_string()),
            ("joined", joined.to_string()),
            ("joins_s", format!("{joins_s:.0}")),
            ("join_p50_ms", ms(jp.p50)),
            ("join_p99_ms", ms(jp.p99)),
            ("join_settle_s", format!("{:.2}", join_phase.wall)),
            ("presences", presences.to_string()),
            ("server_cpu_us_per_join", format!("{join_cpu_us:.0}")),
            ("server_cpu_us_per_presence", format!("{pres_cpu_us:.2}")),
            ("senders", senders.to_string()),
            ("rate", format!("{:.0}", o.rate)),
            ("sent_s", format!("{sent_s:.0}")),
            ("deliveries_s", format!("{deliveries_s:.0}")),
            ("p50_ms", ms(p.p50)),
            ("p99_ms", ms(p.p99)),
            ("max_ms", ms(p.max)),
            ("samples", p.count.to_string()),
            ("sent", sent.to_string()),
            ("expected", expected.to_string()),
            ("delivered", delivered.to_string()),
            ("lost", lost.to_string()),
            ("errors", errors.to_string()),
            (
                "server_cpu_us_per_delivery",
                format!("{cpu_per_delivery:.2}"),
            ),
            ("server_cpu_us_per_sent", format!("{cpu_per_sent:.1}")),
            ("server_cpu_pct", pct(u.server, u.wall)),
            ("rss_kib", rss_end.to_string()),
            ("rss_base_kib", rss0.to_string()),
            ("gen_cpu_pct", pct(u.me, u.wall)),
            ("other_cpu_pct", pct(u.other, u.wall)),
        ],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_room_form_is_an_empty_submit() {
        let f = owner_form("bench@conference.example", &[]);
        assert!(f.contains("to='bench@conference.example'"));
        assert!(f.contains(
            "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'></x></query>"
        ));
        assert!(!f.contains("FORM_TYPE"));
    }

    #[test]
    fn configured_room_form_has_its_fields_escaped() {
        let f = owner_form(
            "r@c.example",
            &["muc#roomconfig_enablearchiving=0".into(), "a<b=x'y".into()],
        );
        assert!(f.contains("<value>http://jabber.org/protocol/muc#roomconfig</value>"));
        assert!(f.contains("<field var='muc#roomconfig_enablearchiving'><value>0</value></field>"));
        assert!(f.contains("<field var='a&lt;b'><value>x&apos;y</value></field>"));
    }

    #[test]
    fn status_codes_in_either_quote_style() {
        let p = br#"<presence from='r@c/u0'><x xmlns='http://jabber.org/protocol/muc#user'><status code="110"/><status code='201'/></x></presence>"#;
        assert!(has_status(p, "110"));
        assert!(has_status(p, "201"));
        assert!(!has_status(p, "100"));
    }

    #[test]
    fn join_asks_for_no_history() {
        let j = join_presence("r@c.example", "u7");
        assert!(j.starts_with("<presence to='r@c.example/u7'>"));
        assert!(j.contains("<history maxstanzas='0'/>"));
    }

    /// The drain is not complete while a sender may still count a message, even when
    /// everything counted so far has arrived (the cause of one message "lost" for every
    /// occupant with no error: a send raced with the end of the run).
    #[test]
    fn muc_drain_waits_for_every_sender_to_stop() {
        let sh = MucShared::new("r@c.example".into(), 1.0, String::new(), 1);
        let (senders, joined) = (2, 10);
        sh.sent.store(3, Ordering::SeqCst);
        sh.delivered.store(30, Ordering::Relaxed);
        let mut a = SenderStop(Some(&sh.stopped));
        let b = SenderStop(Some(&sh.stopped));
        let mut listener = SenderStop(None);
        listener.stop();
        assert!(!sh.drained(senders, joined), "no sender has stopped yet");
        a.stop();
        a.stop();
        assert_eq!(sh.stopped.load(Ordering::SeqCst), 1, "a stop counts once");
        // `b` still sends one more message after everything before it arrived.
        sh.sent.fetch_add(1, Ordering::SeqCst);
        assert!(!sh.drained(senders, joined));
        drop(b);
        assert_eq!(
            sh.stopped.load(Ordering::SeqCst),
            2,
            "an ended sender counts as stopped"
        );
        assert!(
            !sh.drained(senders, joined),
            "its last message has not arrived"
        );
        sh.delivered.fetch_add(10, Ordering::Relaxed);
        assert!(sh.drained(senders, joined));
    }
}
