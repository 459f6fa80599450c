//! XEP-0363 HTTP File Upload end to end: disco, slot requests over XMPP (the independent
//! client), then PUT and GET over HTTPS with a small hyper client on rustls that pins the
//! server's certificate.

mod common;

use common::*;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

const NS_UPLOAD: &str = "urn:xmpp:http:upload:0";
const UPLOAD: &str = "upload.localhost";

struct Reply {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

/// One HTTPS request on a fresh connection.
async fn https(
    s: &TestServer,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let addr: SocketAddr = s.server().state().media.http_addr().expect("upload is on");
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
        .unwrap_or_else(|| url.to_string());
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let cfg = common::xmpp::tls::client_config(&s.trust(), Some(b"http/1.1"));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the upload service");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("localhost:{}", addr.port()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn request_slot(c: &mut Client, name: &str, size: usize, ct: &str) -> Element {
    let ct = if ct.is_empty() {
        String::new()
    } else {
        format!(" content-type='{ct}'")
    };
    c.iq(
        "get",
        Some(UPLOAD),
        &format!(
            "<request xmlns='{NS_UPLOAD}' filename='{}' size='{size}'{ct}/>",
            escape(name)
        ),
    )
    .await
    .expect("slot reply")
}

fn slot_urls(reply: &Element) -> (String, String) {
    let slot = reply
        .child("slot", NS_UPLOAD)
        .unwrap_or_else(|| panic!("no slot in {}", reply.to_xml()));
    let put = slot.child("put", NS_UPLOAD).and_then(|p| p.attr("url"));
    let get = slot.child("get", NS_UPLOAD).and_then(|p| p.attr("url"));
    (put.expect("put url").into(), get.expect("get url").into())
}

fn media(max: u64, quota: u64) -> Options {
    Options {
        media_config: Some(format!(
            "\n[upload]\nhttp_listen = \"127.0.0.1:0\"\nmax_file_size = {max}\nquota_per_user = {quota}\n\
             \n[turn]\nenable = false\n\n[proxy65]\nenable = false\n"
        )),
        ..Options::default()
    }
}

#[tokio::test]
async fn service_is_discovered_with_its_size_limit() {
    bounded(async {
        let s = TestServer::start_with(media(12345, 0)).await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "r", 0).await;
        let items = a
            .iq_ok(
                "get",
                Some(DOMAIN),
                "<query xmlns='http://jabber.org/protocol/disco#items'/>",
            )
            .await
            .unwrap();
        let q = items
            .child("query", "http://jabber.org/protocol/disco#items")
            .unwrap();
        assert!(
            q.elements().any(|i| i.attr("jid") == Some(UPLOAD)),
            "{}",
            items.to_xml()
        );
        // proxy65 is off in this configuration, so it is not listed.
        assert!(!q
            .elements()
            .any(|i| i.attr("jid") == Some("proxy.localhost")));
        let info = a
            .iq_ok(
                "get",
                Some(UPLOAD),
                "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            )
            .await
            .unwrap();
        let q = info
            .child("query", "http://jabber.org/protocol/disco#info")
            .unwrap();
        assert!(q
            .elements()
            .any(|f| f.name == "feature" && f.attr("var") == Some(NS_UPLOAD)));
        let id = q
            .child("identity", "http://jabber.org/protocol/disco#info")
            .unwrap();
        assert_eq!(
            (id.attr("category"), id.attr("type")),
            (Some("store"), Some("file"))
        );
        let form = q.child("x", "jabber:x:data").expect("XEP-0128 form");
        let fields: Vec<(String, String)> = form
            .elements()
            .map(|f| {
                (
                    f.attr("var").unwrap_or("").to_string(),
                    f.child_text("value", "jabber:x:data").unwrap_or_default(),
                )
            })
            .collect();
        assert!(
            fields.contains(&("FORM_TYPE".into(), NS_UPLOAD.into())),
            "{fields:?}"
        );
        assert!(
            fields.contains(&("max-file-size".into(), "12345".into())),
            "{fields:?}"
        );
    })
    .await
}

#[tokio::test]
async fn slot_put_get_round_trip() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "r", 0).await;
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let reply = request_slot(&mut a, "holiday photo é.jpg", data.len(), "image/jpeg").await;
        assert_eq!(reply.attr("type"), Some("result"), "{}", reply.to_xml());
        assert_eq!(reply.attr("from"), Some(UPLOAD));
        let (put, get) = slot_urls(&reply);
        assert!(get.starts_with("https://localhost:"), "{get}");
        assert_ne!(put, get, "the PUT URL carries a token the GET URL does not");

        // Nothing to download before the upload.
        assert_eq!(
            https(&s, "GET", &get, &[], vec![]).await.status,
            StatusCode::NOT_FOUND
        );
        // The GET URL does not allow an upload.
        let r = https(
            &s,
            "PUT",
            &get,
            &[("content-type", "image/jpeg")],
            data.clone(),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        let r = https(
            &s,
            "PUT",
            &put,
            &[("content-type", "image/jpeg")],
            data.clone(),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(header(&r, "access-control-allow-origin"), "*");
        // One upload per slot.
        let r = https(
            &s,
            "PUT",
            &put,
            &[("content-type", "image/jpeg")],
            data.clone(),
        )
        .await;
        assert_eq!(r.status, StatusCode::CONFLICT);

        let r = https(&s, "GET", &get, &[], vec![]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body == data, "downloaded bytes differ");
        assert_eq!(header(&r, "content-type"), "image/jpeg");
        assert_eq!(header(&r, "content-length"), data.len().to_string());
        assert_eq!(
            header(&r, "content-disposition"),
            "inline; filename*=UTF-8''holiday%20photo%20%C3%A9.jpg"
        );
        assert_eq!(header(&r, "access-control-allow-origin"), "*");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        let r = https(&s, "HEAD", &get, &[], vec![]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.is_empty());
        // Another name under the same id is not the file.
        let other = format!("{}/other.jpg", get.rsplit_once('/').unwrap().0);
        assert_eq!(
            https(&s, "GET", &other, &[], vec![]).await.status,
            StatusCode::NOT_FOUND
        );
        // On disk under the data folder, with its metadata.
        let id = get
            .split("/upload/")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        let stored = std::fs::read(s.data_dir().join("upload").join(id).join("data")).unwrap();
        assert!(stored == data);

        // A file of no declared type is served as an attachment.
        let reply = request_slot(&mut a, "page.html", 13, "").await;
        let (put, get) = slot_urls(&reply);
        let r = https(
            &s,
            "PUT",
            &put,
            &[("content-type", "text/html")],
            b"<b>hello</b>\n".to_vec(),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
        let r = https(&s, "GET", &get, &[], vec![]).await;
        assert_eq!(header(&r, "content-type"), "text/html");
        assert!(header(&r, "content-disposition").starts_with("attachment;"));
        assert!(header(&r, "content-security-policy").contains("sandbox"));
    })
    .await
}

#[tokio::test]
async fn bad_puts_are_refused_and_leave_nothing() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "r", 0).await;
        // Wrong type.
        let (put, get) = slot_urls(&request_slot(&mut a, "a.png", 4, "image/png").await);
        let r = https(
            &s,
            "PUT",
            &put,
            &[("content-type", "text/plain")],
            b"abcd".to_vec(),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(
            https(&s, "GET", &get, &[], vec![]).await.status,
            StatusCode::NOT_FOUND
        );
        // More bytes than the slot's size.
        let (put, get) = slot_urls(&request_slot(&mut a, "b.png", 4, "image/png").await);
        let r = https(
            &s,
            "PUT",
            &put,
            &[("content-type", "image/png")],
            b"abcdef".to_vec(),
        )
        .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            https(&s, "GET", &get, &[], vec![]).await.status,
            StatusCode::NOT_FOUND
        );
        // Fewer bytes.
        let (put, _) = slot_urls(&request_slot(&mut a, "c.png", 4, "image/png").await);
        let r = https(
            &s,
            "PUT",
            &put,
            &[("content-type", "image/png")],
            b"ab".to_vec(),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        // A forged token.
        let (put, _) = slot_urls(&request_slot(&mut a, "d.png", 4, "image/png").await);
        // The last character changed (to one it is not: a fixed replacement equals the real
        // token whenever the token already ends with it).
        let last = if put.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &put[..put.len() - 1]);
        let r = https(
            &s,
            "PUT",
            &forged,
            &[("content-type", "image/png")],
            b"abcd".to_vec(),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        // ... and the real one still works after it.
        let r = https(
            &s,
            "PUT",
            &put,
            &[("content-type", "image/png")],
            b"abcd".to_vec(),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
        // Only d.png is on disk: failed uploads were cleaned up.
        let dirs = std::fs::read_dir(s.data_dir().join("upload"))
            .unwrap()
            .count();
        assert_eq!(dirs, 1);
    })
    .await
}

#[tokio::test]
async fn oversize_request_is_refused_with_the_limit() {
    bounded(async {
        let s = TestServer::start_with(media(1000, 0)).await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "r", 0).await;
        let reply = request_slot(&mut a, "big.bin", 1001, "application/octet-stream").await;
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reply.error_condition().as_deref(), Some("not-acceptable"));
        assert_eq!(reply.error_type(), Some("modify"));
        let err = reply.child("error", "jabber:client").unwrap();
        let too_large = err
            .child("file-too-large", NS_UPLOAD)
            .expect("file-too-large");
        assert_eq!(
            too_large.child_text("max-file-size", NS_UPLOAD).as_deref(),
            Some("1000")
        );
        // Exactly the limit is fine.
        let reply = request_slot(&mut a, "big.bin", 1000, "application/octet-stream").await;
        assert_eq!(reply.attr("type"), Some("result"));
    })
    .await
}

#[tokio::test]
async fn quota_is_enforced_per_account() {
    bounded(async {
        let s = TestServer::start_with(media(1000, 1500)).await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "r", 0).await;
        let (put, _) = slot_urls(&request_slot(&mut a, "one", 1000, "").await);
        let r = https(&s, "PUT", &put, &[], vec![1u8; 1000]).await;
        assert_eq!(r.status, StatusCode::CREATED);
        let reply = request_slot(&mut a, "two", 600, "").await;
        assert_eq!(
            reply.error_condition().as_deref(),
            Some("resource-constraint"),
            "{}",
            reply.to_xml()
        );
        // What still fits is granted; bob has his own quota.
        let reply = request_slot(&mut a, "two", 500, "").await;
        assert_eq!(reply.attr("type"), Some("result"));
        let mut b = s.online("bob", "r", 0).await;
        let reply = request_slot(&mut b, "b", 1000, "").await;
        assert_eq!(reply.attr("type"), Some("result"));
    })
    .await
}

#[tokio::test]
async fn cors_preflight() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "r", 0).await;
        let (put, _) = slot_urls(&request_slot(&mut a, "x.png", 3, "image/png").await);
        let r = https(
            &s,
            "OPTIONS",
            &put,
            &[
                ("origin", "https://web.example"),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "content-type"),
            ],
            vec![],
        )
        .await;
        assert!(r.status.is_success(), "{}", r.status);
        assert_eq!(header(&r, "access-control-allow-origin"), "*");
        let methods = header(&r, "access-control-allow-methods");
        assert!(
            methods.contains("PUT") && methods.contains("GET"),
            "{methods}"
        );
        assert!(header(&r, "access-control-allow-headers")
            .to_ascii_lowercase()
            .contains("content-type"));
        // The preflight did not use the slot.
        let r = https(
            &s,
            "PUT",
            &put,
            &[("content-type", "image/png")],
            b"abc".to_vec(),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
    })
    .await
}

#[tokio::test]
async fn strangers_and_bad_requests() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "r", 0).await;
        for bad in [
            format!("<request xmlns='{NS_UPLOAD}' size='3'/>"),
            format!("<request xmlns='{NS_UPLOAD}' filename='a/b' size='3'/>"),
            format!("<request xmlns='{NS_UPLOAD}' filename='a' size='-3'/>"),
        ] {
            let r = a.iq("get", Some(UPLOAD), &bad).await.unwrap();
            assert_eq!(r.error_condition().as_deref(), Some("bad-request"), "{bad}");
        }
        let r = a
            .iq("get", Some(UPLOAD), "<query xmlns='jabber:iq:version'/>")
            .await
            .unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("service-unavailable"));
        // A JID under the service is nobody.
        let r = a
            .iq(
                "get",
                Some("x@upload.localhost"),
                "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            )
            .await
            .unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("service-unavailable"));
    })
    .await
}
