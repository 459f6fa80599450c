//! The compliance record in `xeps/` must tell the truth: `doap.xml` and the table in
//! `xeps/README.md` list the same XEPs with the same versions and statuses, every test the
//! table names exists, every implemented row names at least one, and every disco feature
//! the server's modules advertise belongs to a XEP the record lists as implemented.

use std::collections::BTreeMap;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DOAP_XMPP: &str = "https://linkmauve.fr/ns/xmpp-doap#";
const RDF: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
const DOAP: &str = "http://usefulinc.com/ns/doap#";

/// XEP number -> (version, status) from doap.xml.
fn doap_entries() -> BTreeMap<String, (String, String)> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("xeps/doap.xml")).unwrap();
    let root = oriole::xml::parser::parse_element(&text).expect("doap.xml is well-formed XML");
    assert!(root.is("RDF", RDF), "the root is rdf:RDF");
    let project = root.child("Project", DOAP).expect("a doap:Project");
    let mut out = BTreeMap::new();
    for implements in project.elements().filter(|e| e.is("implements", DOAP)) {
        let Some(xep) = implements.child("SupportedXep", DOAP_XMPP) else {
            continue;
        };
        let url = xep
            .child("xep", DOAP_XMPP)
            .and_then(|e| e.attr("rdf:resource"))
            .expect("xmpp:xep has an rdf:resource");
        let number = url
            .rsplit("xep-")
            .next()
            .and_then(|s| s.strip_suffix(".html"))
            .expect("a XEP URL")
            .to_string();
        let version = xep.child_text("version", DOAP_XMPP).expect("a version");
        let status = xep.child_text("status", DOAP_XMPP).expect("a status");
        assert!(
            [
                "complete",
                "partial",
                "planned",
                "deprecated",
                "removed",
                "wontfix"
            ]
            .contains(&status.as_str()),
            "XEP-{number}: unknown DOAP status {status}"
        );
        assert!(
            out.insert(number.clone(), (version, status)).is_none(),
            "XEP-{number} is listed twice in doap.xml"
        );
    }
    out
}

struct Row {
    spec: String,
    version: String,
    status: String,
    proven_by: Vec<String>,
}

fn readme_rows() -> Vec<Row> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("xeps/README.md")).unwrap();
    text.lines()
        .filter(|l| l.starts_with("| RFC") || l.starts_with("| XEP"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 5, "a row has five cells: {l}");
            let proven_by = cells[4]
                .split(',')
                .map(|s| s.trim().trim_matches('`').to_string())
                .filter(|s| !s.is_empty())
                .collect();
            Row {
                spec: cells[0].to_string(),
                version: cells[1].to_string(),
                status: cells[2].to_string(),
                proven_by,
            }
        })
        .collect()
}

fn xep_number(spec: &str) -> Option<String> {
    let rest = spec.strip_prefix("XEP-")?;
    Some(rest.chars().take_while(char::is_ascii_digit).collect())
}

#[test]
fn doap_and_readme_agree() {
    let doap = doap_entries();
    let rows = readme_rows();
    let mut readme = BTreeMap::new();
    for row in &rows {
        if let Some(n) = xep_number(&row.spec) {
            readme.insert(n, (row.version.clone(), row.status.clone()));
        }
    }
    assert_eq!(
        doap, readme,
        "xeps/doap.xml and xeps/README.md list different XEPs, versions or statuses"
    );
}

#[test]
fn every_named_test_exists_and_implemented_rows_name_one() {
    for row in readme_rows() {
        if row.status == "complete" || row.status == "partial" {
            assert!(!row.proven_by.is_empty(), "{}: no test named", row.spec);
        }
        for reference in &row.proven_by {
            let (file, function) = match reference.split_once("::") {
                Some((f, n)) => (f, Some(n)),
                None => (reference.as_str(), None),
            };
            let path = Path::new(ROOT).join(file);
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {reference}: {e}", row.spec));
            if let Some(name) = function {
                assert!(
                    source.contains(&format!("fn {name}(")),
                    "{}: {file} has no test `{name}`",
                    row.spec
                );
            }
        }
    }
}

/// Which XEP each advertised disco feature comes from.
fn xep_of_feature(feature: &str) -> Option<&'static str> {
    Some(match feature {
        "http://jabber.org/protocol/disco#info" | "http://jabber.org/protocol/disco#items" => {
            "0030"
        }
        "jabber:iq:private" => "0049",
        "vcard-temp" => "0054",
        "jabber:iq:register" => "0077",
        "jabber:iq:version" => "0092",
        "msgoffline" => "0160",
        "urn:xmpp:ping" => "0199",
        "urn:xmpp:time" => "0202",
        "urn:xmpp:carbons:2" => "0280",
        "urn:xmpp:blocking" => "0191",
        "urn:xmpp:mam:2" | "urn:xmpp:mam:1" | "urn:xmpp:mam:2#extended" => "0313",
        "urn:xmpp:sid:0" => "0359",
        "urn:xmpp:push:0" => "0357",
        f if f.starts_with("http://jabber.org/protocol/pubsub#") => "0060",
        "urn:xmpp:bookmarks:1#compat" | "urn:xmpp:bookmarks:1#compat-pep" => "0402",
        "urn:xmpp:bookmarks-conversion:0" => "0411",
        "urn:xmpp:pep-vcard-conversion:0" => "0398",
        "http://jabber.org/protocol/muc" => "0045",
        "http://jabber.org/protocol/muc#self-ping-optimization" => "0410",
        "urn:xmpp:occupant-id:0" => "0421",
        "urn:xmpp:message-moderate:1" => "0425",
        "urn:xmpp:message-retract:1" | "urn:xmpp:message-retract:1#tombstone" => "0424",
        "http://jabber.org/protocol/bytestreams" => "0065",
        "urn:xmpp:extdisco:2" => "0215",
        "urn:xmpp:http:upload:0" => "0363",
        _ => return None,
    })
}

#[test]
fn every_advertised_feature_is_in_the_record() {
    let doap = doap_entries();
    let mut config = oriole::config::Config::default();
    config.registration.allow = true;
    let modules = oriole::modules::register_all(&config);
    let mut features: Vec<&str> = modules
        .iter()
        .flat_map(|m| {
            m.server_features()
                .iter()
                .chain(m.account_features().iter())
                .copied()
        })
        .chain(oriole::components::muc::SERVICE_FEATURES.iter().copied())
        .chain(oriole::components::muc::mam::ROOM_FEATURES.iter().copied())
        .collect();
    features.extend(oriole::components::upload::features(&config));
    assert!(!features.is_empty());
    for f in features {
        let xep = xep_of_feature(f).unwrap_or_else(|| {
            panic!("feature {f} is advertised but not mapped to a XEP in this test and xeps/")
        });
        let (_, status) = doap
            .get(xep)
            .unwrap_or_else(|| panic!("feature {f}: XEP-{xep} is not in xeps/doap.xml"));
        assert!(
            status == "complete" || status == "partial",
            "feature {f} is advertised but XEP-{xep} is {status} in the record"
        );
    }
}
