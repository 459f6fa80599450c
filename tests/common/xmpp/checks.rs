//! Protocol checks shared by the Oriole tests and the Prosody proof of the client: each one
//! states the rule it asserts and where it is written.

use super::client::{Client, ClientError, Result, STEP};
use super::xml::*;
use std::time::Duration;

/// A client stream header to `domain`, as raw text.
pub fn client_header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xml:lang='en' \
         xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAM}'>",
        escape(domain)
    )
}

/// RFC 6120 §5.3.1: TLS is mandatory-to-negotiate when STARTTLS is the only feature offered
/// or carries `<required/>`.
pub fn assert_starttls_mandatory(features: &Element) {
    let tls = features
        .child("starttls", NS_TLS)
        .unwrap_or_else(|| panic!("no <starttls/> offered: {features}"));
    let only = features.elements().count() == 1;
    assert!(
        only || tls.has_child("required", NS_TLS),
        "STARTTLS offered but not mandatory-to-negotiate: {features}"
    );
}

/// Authentication attempted before TLS where TLS is mandatory-to-negotiate must not succeed.
/// RFC 6120 leaves the form open: the SASL failure `<encryption-required/>` (§6.5.3, "the
/// mechanism ... cannot be used unless the confidentiality and integrity of the underlying
/// stream are protected"), or closing the stream with `<policy-violation/>` (§4.9.3.16) or
/// `<not-authorized/>` (§4.9.3.12). Anything else (success, another SASL condition, a
/// challenge) fails.
pub async fn assert_auth_refused_before_tls(r: Result<Element>, c: &mut Client) {
    match r {
        Err(ClientError::SaslFailure { condition, .. }) => {
            assert_eq!(condition, "encryption-required", "SASL failure before TLS")
        }
        Err(ClientError::StreamError { condition, .. }) => {
            assert!(
                condition == "policy-violation" || condition == "not-authorized",
                "stream error before TLS: <{condition}/>"
            );
            c.expect_closed(STEP)
                .await
                .expect("the connection closes after the stream error");
        }
        other => panic!("authentication before TLS was not refused: {other:?}"),
    }
}

/// STARTTLS command injection: plain-text bytes sent after `<starttls/>` in the same write
/// must never be processed inside the TLS session (RFC 6120 §5.4.3.3: "the receiving entity
/// MUST discard any knowledge obtained in an insecure manner from the initiating entity
/// before TLS takes effect").
///
/// The expected outcome is that they are discarded: the handshake succeeds, the new stream
/// works and the injected IQ is never answered. With `allow_refusal`, a server may instead
/// refuse the connection in plain text after `<proceed/>` (a stream error, then close), which
/// is what Prosody 0.12 does; the injected IQ must not be answered either way.
pub async fn starttls_pipelining(c: &mut Client, user: &str, password: &str, allow_refusal: bool) {
    c.send(&format!(
        "<starttls xmlns='{NS_TLS}'/><iq type='get' id='injected'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await
    .unwrap();
    let proceed = c.recv_stanza(STEP).await.unwrap();
    assert!(proceed.is("proceed", NS_TLS), "{proceed}");
    if allow_refusal {
        // Give plain-text bytes that follow <proceed/> a moment to arrive.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let early = c.pending_bytes();
        if !early.is_empty() || c.pending_bytes_after(Duration::from_millis(300)).await {
            let rest = c.read_to_close(STEP).await.unwrap();
            let text = String::from_utf8_lossy(&rest).into_owned();
            let (events, _) = parse_transcript(&rest);
            assert!(
                !events.iter().any(
                    |e| matches!(e, XmlEvent::Element(el) if el.attr("id") == Some("injected"))
                ),
                "the injected IQ was answered: {text}"
            );
            assert!(
                events
                    .iter()
                    .any(|e| matches!(e, XmlEvent::Element(el) if el.is("error", NS_STREAM))),
                "plain-text data after <proceed/> that is not a stream error: {text}"
            );
            return;
        }
    }
    c.tls_handshake_and_restart()
        .await
        .expect("TLS and the new stream work although plain-text bytes followed <starttls/>");
    c.authenticate(super::Mechanism::BestScram, user, password)
        .await
        .unwrap();
    c.bind(Some("pipelining")).await.unwrap();
    c.ping_server().await.unwrap();
    assert!(
        !c.pending.iter().any(|e| e.attr("id") == Some("injected")),
        "the injected IQ was processed: {:?}",
        c.pending
    );
}

/// RFC 6120 §7.7.2.2: a second bind of a resource in use either replaces the old session
/// (which gets the stream error `<conflict/>`) or gives the new session another resource.
pub async fn assert_bind_conflict_resolved(old: &mut Client, new: &Client, requested: &str) {
    if new.full_jid() == requested {
        let cond = old
            .expect_stream_error(STEP)
            .await
            .expect("the old session is closed with a stream error");
        assert_eq!(cond, "conflict");
    } else {
        assert!(new.full_jid().starts_with(&format!("{}/", new.bare_jid())));
        old.ping_server()
            .await
            .expect("the old session still works");
    }
}

/// Await a roster push (RFC 6121 §2.1.6) carrying an item for `jid`; answer it and return
/// the push. A push comes from the account's bare JID or without `from` (§2.1.6).
pub async fn roster_push(c: &mut Client, jid: &str) -> Element {
    let jid_owned = jid.to_string();
    let push = c
        .recv_matching(STEP, &format!("roster push for {jid}"), move |e| {
            e.name == "iq"
                && e.attr("type") == Some("set")
                && e.child("query", NS_ROSTER).is_some_and(|q| {
                    q.children_named("item", NS_ROSTER)
                        .any(|i| i.attr("jid") == Some(jid_owned.as_str()))
                })
        })
        .await
        .unwrap();
    let from = push.attr("from");
    assert!(
        from.is_none() || from == Some(c.bare_jid()),
        "roster push from {from:?}: {push}"
    );
    let id = push
        .attr("id")
        .expect("a roster push has an id")
        .to_string();
    c.send(&format!("<iq type='result' id='{}'/>", escape(&id)))
        .await
        .unwrap();
    push
}

/// The single `<item/>` of a roster push or result.
pub fn roster_item<'a>(iq: &'a Element, jid: &str) -> Option<&'a Element> {
    iq.child("query", NS_ROSTER)?
        .children_named("item", NS_ROSTER)
        .find(|i| i.attr("jid") == Some(jid))
}

/// Assert a roster push for `jid` with this subscription and ask state.
pub async fn expect_push(
    c: &mut Client,
    jid: &str,
    subscription: &str,
    ask: Option<&str>,
) -> Element {
    let push = roster_push(c, jid).await;
    let item = roster_item(&push, jid).unwrap().clone();
    assert_eq!(item.attr("subscription"), Some(subscription), "{push}");
    assert_eq!(item.attr("ask"), ask, "{push}");
    push
}

/// Await a presence stanza of `kind` (None: available) from `from`.
pub async fn expect_presence(c: &mut Client, from: &str, kind: Option<&str>) -> Element {
    let from_owned = from.to_string();
    let kind_owned = kind.map(str::to_string);
    c.recv_matching(STEP, &format!("presence {kind:?} from {from}"), move |e| {
        e.name == "presence"
            && e.attr("from") == Some(from_owned.as_str())
            && e.attr("type") == kind_owned.as_deref()
    })
    .await
    .unwrap()
}

/// Await a presence stanza from `from` of `kind` (None: available) for which `pred` holds.
pub async fn expect_presence_where<F>(
    c: &mut Client,
    from: &str,
    kind: Option<&str>,
    what: &str,
    pred: F,
) -> Element
where
    F: Fn(&Element) -> bool,
{
    let from_owned = from.to_string();
    let kind_owned = kind.map(str::to_string);
    c.recv_matching(
        STEP,
        &format!("presence {kind:?} from {from}: {what}"),
        move |e| {
            e.name == "presence"
                && e.attr("from") == Some(from_owned.as_str())
                && e.attr("type") == kind_owned.as_deref()
                && pred(e)
        },
    )
    .await
    .unwrap()
}

/// Await the unavailable presence that tells `c` a contact's resource is gone: from the
/// contact's full JID, or from its bare JID (which covers every resource; Prosody sends that
/// after an unsubscribe).
pub async fn expect_contact_unavailable(c: &mut Client, contact_full: &str) -> Element {
    let full = contact_full.to_string();
    let bare = contact_full
        .split('/')
        .next()
        .unwrap_or(contact_full)
        .to_string();
    c.recv_matching(
        STEP,
        &format!("unavailable from {contact_full}"),
        move |e| {
            e.name == "presence"
                && e.attr("type") == Some("unavailable")
                && (e.attr("from") == Some(full.as_str()) || e.attr("from") == Some(bare.as_str()))
        },
    )
    .await
    .unwrap()
}

/// The RFC 6121 §3.1 subscription handshake in both directions between two available
/// sessions of accounts with no roster entry for each other, ending in "both".
pub async fn subscribe_both_ways(a: &mut Client, b: &mut Client) {
    let a_bare = a.bare_jid().to_string();
    let b_bare = b.bare_jid().to_string();
    let a_full = a.full_jid().to_string();
    let b_full = b.full_jid().to_string();

    // a -> b subscribe (§3.1.2): a's roster gets b with ask="subscribe" (§3.1.2), b gets the
    // request from a's bare JID (§3.1.3).
    a.send(&format!("<presence to='{b_bare}' type='subscribe'/>"))
        .await
        .unwrap();
    expect_push(a, &b_bare, "none", Some("subscribe")).await;
    expect_presence(b, &a_bare, Some("subscribe")).await;

    // b approves (§3.1.5): b's roster "from"; a gets "subscribed" and b's presence, roster "to".
    b.send(&format!("<presence to='{a_bare}' type='subscribed'/>"))
        .await
        .unwrap();
    expect_push(b, &a_bare, "from", None).await;
    expect_presence(a, &b_bare, Some("subscribed")).await;
    expect_push(a, &b_bare, "to", None).await;
    expect_presence(a, &b_full, None).await;

    // b -> a subscribe and a approves: both.
    b.send(&format!("<presence to='{a_bare}' type='subscribe'/>"))
        .await
        .unwrap();
    expect_push(b, &a_bare, "from", Some("subscribe")).await;
    expect_presence(a, &b_bare, Some("subscribe")).await;
    a.send(&format!("<presence to='{b_bare}' type='subscribed'/>"))
        .await
        .unwrap();
    expect_push(a, &b_bare, "both", None).await;
    expect_presence(b, &a_bare, Some("subscribed")).await;
    expect_push(b, &a_bare, "both", None).await;
    expect_presence(b, &a_full, None).await;
}

/// Parse an XEP-0082 DateTime in UTC ("...Z") and check it is within `slack` of now.
pub fn assert_utc_stamp_near_now(stamp: &str, slack: Duration) {
    assert!(stamp.ends_with('Z'), "not a UTC stamp: {stamp:?}");
    let t = time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{stamp:?} is not an XEP-0082 DateTime: {e}"));
    let now = time::OffsetDateTime::now_utc();
    let diff = (now - t).abs();
    assert!(
        diff <= time::Duration::try_from(slack).unwrap(),
        "stamp {stamp} is {diff} away from now ({now})"
    );
}

/// XEP-0202 entity time result: `<tzo/>` as ±hh:mm (or Z) and `<utc/>` as a UTC DateTime.
pub fn assert_entity_time(iq: &Element) {
    let t = iq
        .child("time", "urn:xmpp:time")
        .unwrap_or_else(|| panic!("no <time/>: {iq}"));
    let tzo = t.child_text("tzo", "urn:xmpp:time").expect("<tzo/>");
    let ok = tzo == "Z"
        || (tzo.len() == 6
            && (tzo.starts_with('+') || tzo.starts_with('-'))
            && tzo[1..3].chars().all(|c| c.is_ascii_digit())
            && &tzo[3..4] == ":"
            && tzo[4..6].chars().all(|c| c.is_ascii_digit()));
    assert!(ok, "bad <tzo/> {tzo:?}");
    let utc = t.child_text("utc", "urn:xmpp:time").expect("<utc/>");
    assert_utc_stamp_near_now(&utc, Duration::from_secs(120));
}
