//! Checks of the test client itself (no server needed): SCRAM against the RFC test vectors and
//! the XML stream reader's framing.

#[path = "common/xmpp/mod.rs"]
mod xmpp;

use xmpp::scram::{ChannelBinding, Hash, ScramClient};
use xmpp::xml::{StreamReader, XmlEvent};

#[test]
fn scram_sha1_rfc5802_vector() {
    let mut c = ScramClient::with_nonce(
        Hash::Sha1,
        "user",
        "pencil",
        ChannelBinding::Unsupported,
        "fyko+d2lbbFgONRv9qkxdawL",
    );
    assert_eq!(c.client_first(), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    let fin = c
        .client_final("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
        .unwrap();
    assert_eq!(
        fin,
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    );
    c.verify_server_final("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
        .unwrap();
    assert!(c
        .verify_server_final("v=AAAApqV8S7suAoZWja4dJRkFsKQ=")
        .is_err());
    assert!(c.verify_server_final("e=invalid-proof").is_err());
}

#[test]
fn scram_sha256_rfc7677_vector() {
    let mut c = ScramClient::with_nonce(
        Hash::Sha256,
        "user",
        "pencil",
        ChannelBinding::Unsupported,
        "rOprNGfwEbeRWgbNEkqO",
    );
    assert_eq!(c.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let fin = c
        .client_final(
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        )
        .unwrap();
    assert_eq!(
        fin,
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    c.verify_server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        .unwrap();
}

#[test]
fn scram_rejects_a_server_nonce_that_does_not_extend_ours() {
    let mut c = ScramClient::with_nonce(
        Hash::Sha256,
        "user",
        "pencil",
        ChannelBinding::Unsupported,
        "abc",
    );
    assert!(c
        .client_final("r=xyzdef,s=QSXCR+Q6sek8bf92,i=4096")
        .is_err());
    assert!(c.client_final("r=abc,s=QSXCR+Q6sek8bf92,i=4096").is_err());
}

#[test]
fn scram_gs2_headers_and_channel_binding_attribute() {
    let c = ScramClient::with_nonce(
        Hash::Sha1,
        "a=b,c",
        "p",
        ChannelBinding::NotAdvertised,
        "n1",
    );
    assert_eq!(c.client_first(), "y,,n=a=3Db=2Cc,r=n1");
    let mut c = ScramClient::with_nonce(
        Hash::Sha512,
        "u",
        "p",
        ChannelBinding::Bound {
            name: "tls-exporter".into(),
            data: vec![1, 2, 3],
        },
        "n1",
    );
    assert_eq!(c.mechanism_name(), "SCRAM-SHA-512-PLUS");
    assert_eq!(c.client_first(), "p=tls-exporter,,n=u,r=n1");
    let fin = c.client_final("r=n1n2,s=QSXCR+Q6sek8bf92,i=1").unwrap();
    // c= is base64("p=tls-exporter,," followed by the binding data).
    let mut expected = b"p=tls-exporter,,".to_vec();
    expected.extend_from_slice(&[1, 2, 3]);
    assert!(
        fin.starts_with(&format!("c={},r=n1n2,p=", xmpp::scram::b64(&expected))),
        "{fin}"
    );
}

#[test]
fn reader_frames_elements_split_anywhere() {
    let stream = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' id='x' from='localhost' version='1.0'>\
        <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
        </stream:features> <message from='a@b/c' type='chat'><body>x &amp; y &#233; \u{e9}</body>\
        <x:y xmlns:x='urn:x'><x:z>1</x:z></x:y></message></stream:stream>";
    let bytes = stream.as_bytes();
    // Feed in every possible two-part split, including inside multi-byte characters.
    for split in 0..bytes.len() {
        let mut r = StreamReader::new();
        let mut events = Vec::new();
        for part in [&bytes[..split], &bytes[split..]] {
            r.feed(part);
            while let Some(ev) = r.next_event().unwrap() {
                events.push(ev);
            }
        }
        assert_eq!(events.len(), 4, "split at {split}: {events:?}");
        match &events[0] {
            XmlEvent::Header(h) => assert_eq!(h.attr("id"), Some("x")),
            other => panic!("{other:?}"),
        }
        match &events[1] {
            XmlEvent::Element(f) => {
                assert!(f.is("features", xmpp::xml::NS_STREAM));
                let tls = f.child("starttls", xmpp::xml::NS_TLS).unwrap();
                assert!(tls.has_child("required", xmpp::xml::NS_TLS));
            }
            other => panic!("{other:?}"),
        }
        match &events[2] {
            XmlEvent::Element(m) => {
                assert!(m.is("message", "jabber:client"));
                assert_eq!(
                    m.child_text("body", "jabber:client").unwrap(),
                    "x & y \u{e9} \u{e9}"
                );
                let y = m.child("y", "urn:x").unwrap();
                assert_eq!(y.child_text("z", "urn:x").unwrap(), "1");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(events[3], XmlEvent::StreamEnd);
    }
}

#[test]
fn reader_reports_restricted_xml_from_the_peer() {
    let mut r = StreamReader::new();
    r.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><!-- c -->");
    assert!(matches!(r.next_event(), Ok(Some(XmlEvent::Header(_)))));
    assert!(r.next_event().is_err());
}

#[test]
fn stream_error_condition_is_found() {
    let e = xmpp::parse_element(
        "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
         <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no</text></stream:error>",
    )
    .unwrap();
    assert_eq!(e.error_condition().as_deref(), Some("host-unknown"));
    let s = xmpp::parse_element(
        "<iq type='error' id='1'><error type='cancel'>\
         <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    )
    .unwrap();
    assert_eq!(s.error_condition().as_deref(), Some("service-unavailable"));
    assert_eq!(s.error_type(), Some("cancel"));
    // Serialising and parsing again gives the same element.
    assert_eq!(xmpp::parse_element(&s.to_xml()).unwrap(), s);
}

/// Cross-check with an independent SCRAM client (the `sasl` crate of xmpp-rs): for the same
/// client nonce and server-first message, both must produce the same client-first and
/// client-final messages, with and without tls-exporter channel binding.
#[test]
fn scram_matches_the_sasl_crate() {
    use sasl::client::mechanisms::Scram;
    use sasl::client::Mechanism as _;
    use sasl::common::scram::{Sha1, Sha256};
    use sasl::common::{ChannelBinding as TheirCb, Credentials};

    let cb_data = vec![7u8; 32];
    let cases = [
        (TheirCb::None, ChannelBinding::Unsupported),
        (TheirCb::Unsupported, ChannelBinding::NotAdvertised),
        (
            TheirCb::TlsExporter(cb_data.clone()),
            ChannelBinding::Bound {
                name: "tls-exporter".into(),
                data: cb_data.clone(),
            },
        ),
    ];
    for (theirs_cb, ours_cb) in cases {
        for hash in [Hash::Sha1, Hash::Sha256] {
            let creds = Credentials::default()
                .with_username("user")
                .with_password("pencil")
                .with_channel_binding(theirs_cb.clone());
            let mut theirs: Box<dyn sasl::client::Mechanism> = match hash {
                Hash::Sha1 => Box::new(Scram::<Sha1>::from_credentials(creds).unwrap()),
                _ => Box::new(Scram::<Sha256>::from_credentials(creds).unwrap()),
            };
            let first = String::from_utf8(theirs.initial()).unwrap();
            let cnonce = first.rsplit("r=").next().unwrap().to_string();
            let mut ours =
                ScramClient::with_nonce(hash, "user", "pencil", ours_cb.clone(), &cnonce);
            assert_eq!(ours.client_first(), first);
            assert_eq!(ours.mechanism_name(), theirs.name());
            let server_first = format!("r={cnonce}srvpart,s=QSXCR+Q6sek8bf92,i=4096");
            let their_final =
                String::from_utf8(theirs.response(server_first.as_bytes()).unwrap()).unwrap();
            assert_eq!(ours.client_final(&server_first).unwrap(), their_final);
        }
    }
}
