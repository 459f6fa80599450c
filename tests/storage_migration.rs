//! Storage schema 1 → 2 seen from clients: an account whose credentials are stored the way
//! schema 1 stored them (JSON) still logs in, with every mechanism, after the server opened
//! the database, and its record is rewritten in the compact form.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const ACCOUNT_KEY: &[u8] = b"localhost\0alice";

/// Open the server's database directly (the server is stopped; its I/O threads may hold the
/// lock for a moment after shutdown).
fn open_raw(data_dir: &Path) -> sled::Db {
    let path = data_dir.join("db");
    for _ in 0..100 {
        match sled::Config::new().path(&path).open() {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    panic!("cannot open {}", path.display());
}

/// The stored record of alice and the schema version.
fn stored(data_dir: &Path) -> (Vec<u8>, u32) {
    let db = open_raw(data_dir);
    let accounts = db.open_tree("accounts").unwrap();
    let record = accounts.get(ACCOUNT_KEY).unwrap().expect("alice's record");
    let schema = db.get("schema_version").unwrap().expect("schema version");
    (
        record.to_vec(),
        u32::from_be_bytes(schema.as_ref().try_into().unwrap()),
    )
}

async fn login(s: &TestServer, mech: Mechanism, password: &str) -> Result<Client, ClientError> {
    let mut c = Client::connect(s.starttls_addr(), DOMAIN, s.trust(), Security::StartTls).await?;
    c.authenticate(mech, "alice", password).await?;
    c.bind(Some("r")).await?;
    Ok(c)
}

#[tokio::test]
async fn schema_1_json_credentials_still_log_in_and_are_rewritten() {
    bounded(async {
        let mut s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let dir = s.data_dir();
        s.shutdown().await;

        // Make the database what schema 1 wrote: credentials as JSON, schema version 1.
        let (compact, schema) = stored(&dir);
        assert_eq!(schema, oriole::storage::SCHEMA_VERSION);
        let creds = oriole::storage::credentials_codec::decode(&compact).unwrap();
        let json = serde_json::to_vec(&creds).unwrap();
        {
            let db = open_raw(&dir);
            let accounts = db.open_tree("accounts").unwrap();
            accounts.insert(ACCOUNT_KEY, json.as_slice()).unwrap();
            db.insert("schema_version", &1u32.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        assert_eq!(stored(&dir), (json.clone(), 1));

        let mut s = s.restart().await;
        for mech in [
            Mechanism::Scram(Hash::Sha1),
            Mechanism::Scram(Hash::Sha256),
            Mechanism::Scram(Hash::Sha512),
            Mechanism::Plain,
        ] {
            let c = login(&s, mech.clone(), "alicepw").await;
            assert!(c.is_ok(), "{mech:?}: {:?}", c.err());
        }
        assert!(login(&s, Mechanism::BestScram, "wrong").await.is_err());
        let dir = s.data_dir();
        s.shutdown().await;

        let (record, schema) = stored(&dir);
        assert_eq!(schema, oriole::storage::SCHEMA_VERSION);
        assert_eq!(record[0], oriole::storage::credentials_codec::VERSION);
        assert_eq!(record, compact);
    })
    .await
}
