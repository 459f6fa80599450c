//! Tests of the SASL mechanisms: the RFC 5802 and RFC 7677 example exchanges verbatim, round
//! trips against a small independent SCRAM client (written here directly on the RustCrypto
//! crates, sharing no code with the server), and the failure paths.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::*;

// ---------------------------------------------------------------------------------------
// An independent SCRAM client.

#[derive(Clone, Copy, Debug)]
enum Alg {
    Sha1,
    Sha256,
    Sha512,
}

fn alg_of(mech: Mechanism) -> Alg {
    match mech {
        Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Alg::Sha1,
        Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Alg::Sha256,
        Mechanism::ScramSha512 | Mechanism::ScramSha512Plus => Alg::Sha512,
        Mechanism::Plain => panic!("not SCRAM"),
    }
}

fn c_hmac(alg: Alg, key: &[u8], data: &[u8]) -> Vec<u8> {
    macro_rules! run {
        ($d:ty) => {{
            let mut mac = <Hmac<$d> as Mac>::new_from_slice(key).unwrap();
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }};
    }
    match alg {
        Alg::Sha1 => run!(Sha1),
        Alg::Sha256 => run!(Sha256),
        Alg::Sha512 => run!(Sha512),
    }
}

fn c_hash(alg: Alg, data: &[u8]) -> Vec<u8> {
    match alg {
        Alg::Sha1 => Sha1::digest(data).to_vec(),
        Alg::Sha256 => Sha256::digest(data).to_vec(),
        Alg::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// PBKDF2 written out by hand (one block suffices: dkLen = hLen).
fn c_hi(alg: Alg, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = c_hmac(alg, password, &block);
    let mut out = u.clone();
    for _ in 1..iterations {
        u = c_hmac(alg, password, &u);
        out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
    }
    out
}

struct Client {
    alg: Alg,
    password: String,
    client_nonce: String,
    gs2_header: String,
    cb_data: Vec<u8>,
    first_bare: String,
    expected_server_signature: Vec<u8>,
}

impl Client {
    /// `flag` is the GS2 cbind flag ("n", "y", "p=tls-exporter"); `cb_data` what the client
    /// believes the channel binding data is.
    fn new(mech: Mechanism, user: &str, password: &str, flag: &str, authzid: Option<&str>) -> Self {
        let escape = |s: &str| s.replace('=', "=3D").replace(',', "=2C");
        let gs2_header = match authzid {
            Some(a) => format!("{flag},a={},", escape(a)),
            None => format!("{flag},,"),
        };
        let client_nonce = "rOprNGfwEbeRWgbNEkqOclient".to_owned();
        Client {
            alg: alg_of(mech),
            password: password.to_owned(),
            first_bare: format!("n={},r={client_nonce}", escape(user)),
            client_nonce,
            gs2_header,
            cb_data: Vec::new(),
            expected_server_signature: Vec::new(),
        }
    }

    fn with_cb_data(mut self, data: &[u8]) -> Self {
        self.cb_data = data.to_vec();
        self
    }

    fn first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.first_bare).into_bytes()
    }

    fn final_message(&mut self, server_first: &[u8]) -> Vec<u8> {
        let server_first = std::str::from_utf8(server_first).unwrap();
        let mut parts = server_first.split(',');
        let nonce = parts.next().unwrap().strip_prefix("r=").unwrap();
        let salt = STANDARD
            .decode(parts.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        let iterations: u32 = parts
            .next()
            .unwrap()
            .strip_prefix("i=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(nonce.starts_with(&self.client_nonce));
        assert!(nonce.len() > self.client_nonce.len());

        let mut cbind_input = self.gs2_header.clone().into_bytes();
        cbind_input.extend_from_slice(&self.cb_data);
        let without_proof = format!("c={},r={nonce}", STANDARD.encode(&cbind_input));
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);

        let salted = c_hi(self.alg, self.password.as_bytes(), &salt, iterations);
        let client_key = c_hmac(self.alg, &salted, b"Client Key");
        let stored_key = c_hash(self.alg, &client_key);
        let signature = c_hmac(self.alg, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = c_hmac(self.alg, &salted, b"Server Key");
        self.expected_server_signature = c_hmac(self.alg, &server_key, auth_message.as_bytes());
        format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes()
    }

    fn check_server_final(&self, data: &[u8]) -> bool {
        data == format!("v={}", STANDARD.encode(&self.expected_server_signature)).as_bytes()
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures.

const TEST_ITERATIONS: u32 = 16;

fn creds(password: &str) -> StoredCredentials {
    StoredCredentials {
        sha1: ScramKeys::derive(
            ScramHash::Sha1,
            password,
            b"salt-for-sha-1..",
            TEST_ITERATIONS,
        ),
        sha256: ScramKeys::derive(
            ScramHash::Sha256,
            password,
            b"salt-for-sha256.",
            TEST_ITERATIONS,
        ),
        sha512: ScramKeys::derive(
            ScramHash::Sha512,
            password,
            b"salt-for-sha512.",
            TEST_ITERATIONS,
        ),
    }
}

fn both_cb() -> ChannelBindings {
    ChannelBindings {
        tls_exporter: Some(vec![0xE5; 32]),
        tls_server_end_point: Some(vec![0x5E; 32]),
    }
}

const SCRAM: [Mechanism; 6] = [
    Mechanism::ScramSha1,
    Mechanism::ScramSha1Plus,
    Mechanism::ScramSha256,
    Mechanism::ScramSha256Plus,
    Mechanism::ScramSha512,
    Mechanism::ScramSha512Plus,
];

/// A lookup that knows "user" (with password "pencil") and records the names asked for.
struct Users {
    creds: StoredCredentials,
    asked: std::cell::RefCell<Vec<String>>,
}

impl Users {
    fn new() -> Users {
        Users {
            creds: creds("pencil"),
            asked: Default::default(),
        }
    }

    fn lookup(&self, name: &str) -> Option<StoredCredentials> {
        self.asked.borrow_mut().push(name.to_owned());
        (name == "user" || name == "a,b=c").then(|| self.creds.clone())
    }
}

fn run_scram(
    mech: Mechanism,
    cb: ChannelBindings,
    offered: &[Mechanism],
    client: &mut Client,
    users: &Users,
) -> SaslStep {
    let mut server = SaslServer::new(mech, cb, offered);
    let lookup = |n: &str| users.lookup(n);
    let server_first = match server.start(Some(&client.first()), &lookup) {
        SaslStep::Challenge(data) => data,
        other => return other,
    };
    let client_final = client.final_message(&server_first);
    server.step(&client_final, &lookup)
}

fn assert_success(step: &SaslStep, client: &Client, user: &str, authzid: Option<&str>) {
    match step {
        SaslStep::Success {
            username,
            authzid: got_authzid,
            additional_data: Some(data),
        } => {
            assert_eq!(username, user);
            assert_eq!(got_authzid.as_deref(), authzid);
            assert!(client.check_server_final(data), "server signature");
        }
        other => panic!("expected success, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// RFC test vectors.

fn rfc_vector(
    mech: Mechanism,
    salt_b64: &str,
    server_nonce: &str,
    client_first: &str,
    server_first: &str,
    client_final: &str,
    server_final: &str,
) {
    let hash = mech.scram_hash().unwrap();
    let salt = STANDARD.decode(salt_b64).unwrap();
    let mut stored = creds("pencil");
    *match hash {
        ScramHash::Sha1 => &mut stored.sha1,
        ScramHash::Sha256 => &mut stored.sha256,
        ScramHash::Sha512 => &mut stored.sha512,
    } = ScramKeys::derive(hash, "pencil", &salt, 4096);
    let lookup = |n: &str| (n == "user").then(|| stored.clone());

    let mut server = SaslServer::new(mech, ChannelBindings::default(), &[mech]);
    server.without_downgrade_protection();
    server.set_test_server_nonce(server_nonce);
    assert_eq!(
        server.start(Some(client_first.as_bytes()), &lookup),
        SaslStep::Challenge(server_first.as_bytes().to_vec())
    );
    assert_eq!(
        server.step(client_final.as_bytes(), &lookup),
        SaslStep::Success {
            username: "user".into(),
            authzid: None,
            additional_data: Some(server_final.as_bytes().to_vec()),
        }
    );
}

#[test]
fn rfc5802_sha1_example() {
    rfc_vector(
        Mechanism::ScramSha1,
        "QSXCR+Q6sek8bf92",
        "3rfcNHYJY1ZVvWVs7j",
        "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    );
}

#[test]
fn rfc7677_sha256_example() {
    rfc_vector(
        Mechanism::ScramSha256,
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    );
}

#[test]
fn rfc5802_proof_from_the_independent_client() {
    // The test client reproduces the RFC 5802 proof, so it is a valid reference.
    let mut client = Client::new(Mechanism::ScramSha1, "user", "pencil", "n", None);
    client.client_nonce = "fyko+d2lbbFgONRv9qkxdawL".into();
    client.first_bare = "n=user,r=fyko+d2lbbFgONRv9qkxdawL".into();
    let fin = client
        .final_message(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096");
    assert_eq!(
        fin,
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    );
    assert!(client.check_server_final(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="));
}

// ---------------------------------------------------------------------------------------
// Round trips.

#[test]
fn round_trip_all_scram_variants_and_binding_types() {
    let users = Users::new();
    let cb = both_cb();
    let offered = offered_mechanisms(true, &cb);
    for mech in SCRAM {
        if mech.is_plus() {
            for (name, data) in [
                ("tls-exporter", cb.tls_exporter.clone().unwrap()),
                (
                    "tls-server-end-point",
                    cb.tls_server_end_point.clone().unwrap(),
                ),
            ] {
                let mut client = Client::new(mech, "user", "pencil", &format!("p={name}"), None)
                    .with_cb_data(&data);
                let step = run_scram(mech, cb.clone(), &offered, &mut client, &users);
                assert_success(&step, &client, "user", None);
            }
        } else {
            // A client without channel binding support may use the plain variant even
            // though -PLUS was offered.
            let mut client = Client::new(mech, "user", "pencil", "n", None);
            let step = run_scram(mech, cb.clone(), &offered, &mut client, &users);
            assert_success(&step, &client, "user", None);
        }
    }
}

#[test]
fn round_trip_without_initial_response() {
    let users = Users::new();
    let lookup = |n: &str| users.lookup(n);
    let mut client = Client::new(Mechanism::ScramSha256, "user", "pencil", "n", None);
    let offered = offered_mechanisms(false, &ChannelBindings::default());
    let mut server = SaslServer::new(Mechanism::ScramSha256, Default::default(), &offered);
    assert_eq!(server.start(None, &lookup), SaslStep::Challenge(vec![]));
    let SaslStep::Challenge(server_first) = server.step(&client.first(), &lookup) else {
        panic!("expected server-first");
    };
    let step = server.step(&client.final_message(&server_first), &lookup);
    assert_success(&step, &client, "user", None);
    // Nothing is accepted after the end.
    assert_eq!(
        server.step(b"anything", &lookup),
        SaslStep::Failure(SaslFailure::MalformedRequest)
    );
}

#[test]
fn authzid_and_escaped_username() {
    let users = Users::new();
    let cb = both_cb();
    let offered = offered_mechanisms(true, &cb);
    let mut client = Client::new(
        Mechanism::ScramSha512Plus,
        "a,b=c",
        "pencil",
        "p=tls-exporter",
        Some("a,b=c@example.org"),
    )
    .with_cb_data(cb.tls_exporter.as_deref().unwrap());
    let step = run_scram(
        Mechanism::ScramSha512Plus,
        cb,
        &offered,
        &mut client,
        &users,
    );
    assert_success(&step, &client, "a,b=c", Some("a,b=c@example.org"));
    assert_eq!(users.asked.borrow().as_slice(), ["a,b=c"]);
}

#[test]
fn y_flag_is_fine_when_no_plus_was_offered() {
    let users = Users::new();
    let offered = offered_mechanisms(true, &ChannelBindings::default());
    assert!(!offered.iter().any(|m| m.is_plus()));
    let mut client = Client::new(Mechanism::ScramSha1, "user", "pencil", "y", None);
    let step = run_scram(
        Mechanism::ScramSha1,
        Default::default(),
        &offered,
        &mut client,
        &users,
    );
    assert_success(&step, &client, "user", None);
}

#[test]
fn server_nonce_is_random_and_printable() {
    let users = Users::new();
    let lookup = |n: &str| users.lookup(n);
    let client = Client::new(Mechanism::ScramSha256, "user", "pencil", "n", None);
    let nonce = || {
        let mut server = SaslServer::new(Mechanism::ScramSha256, Default::default(), &SCRAM);
        let SaslStep::Challenge(first) = server.start(Some(&client.first()), &lookup) else {
            panic!("expected server-first");
        };
        let first = String::from_utf8(first).unwrap();
        let nonce = first.split(',').next().unwrap().strip_prefix("r=").unwrap();
        nonce.strip_prefix(&client.client_nonce).unwrap().to_owned()
    };
    let (a, b) = (nonce(), nonce());
    assert_ne!(a, b);
    // ≥ 18 random bytes → ≥ 24 base64 characters.
    assert!(a.len() >= 24, "{a}");
    assert!(a.bytes().all(|c| (0x21..=0x7e).contains(&c) && c != b','));
}

// ---------------------------------------------------------------------------------------
// Failures.

#[test]
fn downgrade_y_flag_fails_when_plus_was_offered() {
    let users = Users::new();
    let cb = both_cb();
    let offered = offered_mechanisms(true, &cb);
    for mech in [
        Mechanism::ScramSha1,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ] {
        let mut client = Client::new(mech, "user", "pencil", "y", None);
        let step = run_scram(mech, cb.clone(), &offered, &mut client, &users);
        assert_eq!(
            step,
            SaslStep::Failure(SaslFailure::NotAuthorized),
            "{mech}"
        );
    }
    // Even when the connection code passes no channel binding data, what was offered counts.
    let mut client = Client::new(Mechanism::ScramSha256, "user", "pencil", "y", None);
    let step = run_scram(
        Mechanism::ScramSha256,
        Default::default(),
        &offered,
        &mut client,
        &users,
    );
    assert_eq!(step, SaslStep::Failure(SaslFailure::NotAuthorized));
}

#[test]
fn wrong_password_fails() {
    let users = Users::new();
    let cb = both_cb();
    let offered = offered_mechanisms(true, &cb);
    for mech in SCRAM {
        let flag = if mech.is_plus() {
            "p=tls-server-end-point"
        } else {
            "n"
        };
        let mut client = Client::new(mech, "user", "pencils", flag, None)
            .with_cb_data(cb.tls_server_end_point.as_deref().unwrap());
        let step = run_scram(mech, cb.clone(), &offered, &mut client, &users);
        assert_eq!(
            step,
            SaslStep::Failure(SaslFailure::NotAuthorized),
            "{mech}"
        );
    }
}

/// The server-first message split into (nonce, salt, iterations).
fn parse_server_first(data: &[u8]) -> (String, Vec<u8>, u32) {
    let text = std::str::from_utf8(data).unwrap();
    let attrs: Vec<&str> = text.split(',').collect();
    // r, s, i, and the XEP-0474 h= the server adds.
    assert!(
        attrs.len() == 3 || (attrs.len() == 4 && attrs[3].starts_with("h=")),
        "{text}"
    );
    (
        attrs[0].strip_prefix("r=").unwrap().to_owned(),
        STANDARD
            .decode(attrs[1].strip_prefix("s=").unwrap())
            .unwrap(),
        attrs[2].strip_prefix("i=").unwrap().parse().unwrap(),
    )
}

#[test]
fn unknown_user_is_indistinguishable_in_flow() {
    // A real account as `StoredCredentials::derive` makes them (keys need not be valid here,
    // only their shape matters), with the default iteration count.
    let real = StoredCredentials {
        sha1: ScramKeys {
            salt: vec![7; credentials::SALT_LEN],
            iterations: DEFAULT_ITERATIONS,
            stored_key: vec![1; 20],
            server_key: vec![2; 20],
        },
        sha256: ScramKeys {
            salt: vec![7; credentials::SALT_LEN],
            iterations: DEFAULT_ITERATIONS,
            stored_key: vec![1; 32],
            server_key: vec![2; 32],
        },
        sha512: ScramKeys {
            salt: vec![7; credentials::SALT_LEN],
            iterations: DEFAULT_ITERATIONS,
            stored_key: vec![1; 64],
            server_key: vec![2; 64],
        },
    };
    let lookup = |n: &str| (n == "real").then(|| real.clone());
    let first_for = |mech: Mechanism, user: &str| {
        let client = Client::new(mech, user, "pw", "n", None);
        let mut server = SaslServer::new(mech, Default::default(), &SCRAM);
        let SaslStep::Challenge(first) = server.start(Some(&client.first()), &lookup) else {
            panic!("expected server-first");
        };
        (server, client, first)
    };

    for mech in [
        Mechanism::ScramSha1,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ] {
        let (mut real_server, mut real_client, real_first) = first_for(mech, "real");
        let (mut ghost_server, mut ghost_client, ghost_first) = first_for(mech, "ghost");
        let (real_nonce, real_salt, real_iter) = parse_server_first(&real_first);
        let (ghost_nonce, ghost_salt, ghost_iter) = parse_server_first(&ghost_first);
        assert_eq!(real_nonce.len(), ghost_nonce.len());
        assert_eq!(real_salt.len(), ghost_salt.len());
        assert_eq!(real_iter, ghost_iter);

        // The fake salt is stable per name and differs between names and hashes.
        let (_, _, again) = first_for(mech, "ghost");
        assert_eq!(parse_server_first(&again).1, ghost_salt);
        let (_, _, other) = first_for(mech, "phantom");
        assert_ne!(parse_server_first(&other).1, ghost_salt);

        // Both end the same way.
        let real_final = real_client.final_message(&real_first);
        let ghost_final = ghost_client.final_message(&ghost_first);
        let real_end = real_server.step(&real_final, &lookup);
        let ghost_end = ghost_server.step(&ghost_final, &lookup);
        assert_eq!(real_end, SaslStep::Failure(SaslFailure::NotAuthorized));
        assert_eq!(ghost_end, real_end);
    }
    let salt = |mech| parse_server_first(&first_for(mech, "ghost").2).1;
    assert_ne!(salt(Mechanism::ScramSha1), salt(Mechanism::ScramSha256));
}

#[test]
fn account_without_keys_for_the_hash_fails_like_a_wrong_password() {
    let mut stored = creds("pencil");
    stored.sha512 = ScramKeys {
        salt: vec![],
        iterations: 0,
        stored_key: vec![],
        server_key: vec![],
    };
    let lookup = |n: &str| (n == "user").then(|| stored.clone());
    let client = Client::new(Mechanism::ScramSha512, "user", "pencil", "n", None);
    let mut server = SaslServer::new(Mechanism::ScramSha512, Default::default(), &SCRAM);
    let SaslStep::Challenge(first) = server.start(Some(&client.first()), &lookup) else {
        panic!("expected server-first");
    };
    let (nonce, salt, iterations) = parse_server_first(&first);
    assert_eq!(salt.len(), credentials::SALT_LEN);
    assert_eq!(iterations, DEFAULT_ITERATIONS);
    // The lookup found the account, but a proof can never match keys that are not there.
    let fin = format!("c=biws,r={nonce},p={}", STANDARD.encode([0u8; 64]));
    assert_eq!(
        server.step(fin.as_bytes(), &lookup),
        SaslStep::Failure(SaslFailure::NotAuthorized)
    );
}

/// Run client-first `first` against `mech`; returns the step.
fn first_step(
    mech: Mechanism,
    cb: ChannelBindings,
    offered: &[Mechanism],
    first: &[u8],
) -> SaslStep {
    let users = Users::new();
    let mut server = SaslServer::new(mech, cb, offered);
    server.start(Some(first), &|n: &str| users.lookup(n))
}

#[test]
fn bad_client_first_messages() {
    use SaslFailure::*;
    let cb = both_cb();
    let all = offered_mechanisms(true, &cb);
    let only_end_point = ChannelBindings {
        tls_exporter: None,
        tls_server_end_point: Some(vec![1; 32]),
    };
    let plain_mech = Mechanism::ScramSha256;
    let plus = Mechanism::ScramSha256Plus;
    let long = format!("n,,n=user,r={}", "x".repeat(MAX_CLIENT_MESSAGE));
    let cases: Vec<(Mechanism, ChannelBindings, &[u8], SaslFailure)> = vec![
        (plain_mech, cb.clone(), b"", MalformedRequest),
        (plain_mech, cb.clone(), b"x,,n=user,r=abc", MalformedRequest),
        (plain_mech, cb.clone(), b"n", MalformedRequest),
        (plain_mech, cb.clone(), b"n,", MalformedRequest),
        (plain_mech, cb.clone(), b"n,n=user,r=abc", MalformedRequest),
        (plain_mech, cb.clone(), b"N,,n=user,r=abc", MalformedRequest),
        (
            plain_mech,
            cb.clone(),
            b"n,a=,n=user,r=abc",
            MalformedRequest,
        ),
        (
            plain_mech,
            cb.clone(),
            b"n,a=x=41,n=user,r=abc",
            MalformedRequest,
        ),
        (
            plain_mech,
            cb.clone(),
            b"n,b=x,n=user,r=abc",
            MalformedRequest,
        ),
        (
            plain_mech,
            cb.clone(),
            b"p=tls-exporter,,n=user,r=abc",
            MalformedRequest,
        ),
        (plus, cb.clone(), b"n,,n=user,r=abc", MalformedRequest),
        (plus, cb.clone(), b"y,,n=user,r=abc", MalformedRequest),
        (
            plus,
            cb.clone(),
            b"p=tls-unique,,n=user,r=abc",
            MalformedRequest,
        ),
        (plus, cb.clone(), b"p=,,n=user,r=abc", MalformedRequest),
        (
            plus,
            cb.clone(),
            b"p=tls_exporter,,n=user,r=abc",
            MalformedRequest,
        ),
        (
            plus,
            only_end_point,
            b"p=tls-exporter,,n=user,r=abc",
            MalformedRequest,
        ),
        (
            plain_mech,
            cb.clone(),
            b"n,,m=ext,n=user,r=abc",
            MalformedRequest,
        ),
        (plain_mech, cb.clone(), b"n,,n=,r=abc", MalformedRequest),
        (
            plain_mech,
            cb.clone(),
            b"n,,n=us=41er,r=abc",
            MalformedRequest,
        ),
        (
            plain_mech,
            cb.clone(),
            b"n,,n=us\x07er,r=abc",
            MalformedRequest,
        ),
        (plain_mech, cb.clone(), b"n,,user,r=abc", MalformedRequest),
        (plain_mech, cb.clone(), b"n,,n=user", MalformedRequest),
        (plain_mech, cb.clone(), b"n,,n=user,r=", MalformedRequest),
        (plain_mech, cb.clone(), b"n,,n=user,r=a b", MalformedRequest),
        (plain_mech, cb.clone(), b"n,,r=abc,n=user", MalformedRequest),
        (
            plain_mech,
            cb.clone(),
            b"n,,n=user,r=abc,",
            MalformedRequest,
        ),
        (
            plain_mech,
            cb.clone(),
            b"n,,n=user,r=abc,x",
            MalformedRequest,
        ),
        (
            plain_mech,
            cb.clone(),
            b"n,,n=user,r=abc,1=x",
            MalformedRequest,
        ),
        (
            plain_mech,
            cb.clone(),
            b"n,,n=user,r=abc,x=",
            MalformedRequest,
        ),
        (
            plain_mech,
            cb.clone(),
            b"n,,n=user,r=\xff\xfe",
            MalformedRequest,
        ),
        (plain_mech, cb.clone(), long.as_bytes(), MalformedRequest),
    ];
    for (mech, cb, msg, expected) in cases {
        assert_eq!(
            first_step(mech, cb, &all, msg),
            SaslStep::Failure(expected),
            "{mech} {:?}",
            String::from_utf8_lossy(msg)
        );
    }
    // Extensions are ignored; a nonce may contain '='.
    for ok in [
        &b"n,,n=user,r=abc,x=1"[..],
        b"n,,n=user,r=a=b,x=1,y=a=b",
        b"n,a=user@example.org,n=user,r=abc",
    ] {
        assert!(matches!(
            first_step(plain_mech, cb.clone(), &all, ok),
            SaslStep::Challenge(_)
        ));
    }
}

#[test]
fn bad_client_final_messages() {
    use SaslFailure::*;
    let users = Users::new();
    let lookup = |n: &str| users.lookup(n);
    let cb = both_cb();
    let offered = offered_mechanisms(true, &cb);
    let mech = Mechanism::ScramSha256Plus;

    // Each case gets a fresh exchange; `mangle` turns the correct client-final into a bad one.
    let check = |mangle: &dyn Fn(&str, &str) -> String, expected: SaslFailure, what: &str| {
        let mut client =
            Client::new(mech, "user", "pencil", "p=tls-exporter", None).with_cb_data(&[0xE5; 32]);
        let mut server = SaslServer::new(mech, cb.clone(), &offered);
        let SaslStep::Challenge(first) = server.start(Some(&client.first()), &lookup) else {
            panic!("expected server-first");
        };
        let good = String::from_utf8(client.final_message(&first)).unwrap();
        let nonce = parse_server_first(&first).0;
        let bad = mangle(&good, &nonce);
        assert_eq!(
            server.step(bad.as_bytes(), &lookup),
            SaslStep::Failure(expected),
            "{what}"
        );
    };
    let proof_of = |good: &str| good.rsplit_once(",p=").unwrap().1.to_owned();

    check(
        &|g, _| g.replace(",p=", ",q="),
        MalformedRequest,
        "no proof",
    );
    check(&|g, _| g.replace("c=", "d="), MalformedRequest, "no c=");
    check(
        &|g, n| g.replace(&format!(",r={n}"), ""),
        MalformedRequest,
        "no nonce",
    );
    check(
        &|g, n| g.replace(&format!(",r={n}"), &format!(",r={n},x")),
        MalformedRequest,
        "bad extension",
    );
    check(
        &|g, _| format!("{g},x=1"),
        MalformedRequest,
        "proof not last",
    );
    check(
        &|g, _| g.replace("c=", "c=!"),
        IncorrectEncoding,
        "bad base64 in c=",
    );
    check(
        &|g, _| g.replace(",p=", ",p=*"),
        IncorrectEncoding,
        "bad base64 in p=",
    );
    check(
        &|g, _| {
            format!(
                "{},p={}",
                g.rsplit_once(",p=").unwrap().0,
                STANDARD.encode([1u8; 20])
            )
        },
        MalformedRequest,
        "proof of the wrong length",
    );
    check(
        &|g, n| g.replace(n, &format!("{n}x")),
        NotAuthorized,
        "nonce mismatch",
    );
    // Channel binding data: the other type's data, the bare header, a header without data.
    for (cbind_input, what) in [
        (
            [b"p=tls-exporter,,".as_slice(), &[0x5E; 32]].concat(),
            "end-point data under exporter",
        ),
        (b"p=tls-exporter,,".to_vec(), "header without data"),
        (b"n,,".to_vec(), "n header"),
        (
            [b"p=tls-exporter,,".as_slice(), &[0xE5; 31]].concat(),
            "truncated data",
        ),
    ] {
        check(
            &|g, n| {
                format!(
                    "c={},r={n},p={}",
                    STANDARD.encode(&cbind_input),
                    proof_of(g)
                )
            },
            NotAuthorized,
            what,
        );
    }
    check(
        &|_, _| "x".repeat(MAX_CLIENT_MESSAGE + 1),
        MalformedRequest,
        "too long",
    );
    // Sanity: the unmangled message succeeds.
    let mut client =
        Client::new(mech, "user", "pencil", "p=tls-exporter", None).with_cb_data(&[0xE5; 32]);
    let step = run_scram(mech, cb.clone(), &offered, &mut client, &users);
    assert_success(&step, &client, "user", None);
}

#[test]
fn client_using_wrong_channel_binding_data_fails() {
    // E.g. a MITM relays the exchange over its own TLS connection to us.
    let users = Users::new();
    let cb = both_cb();
    let offered = offered_mechanisms(true, &cb);
    for (flag, data) in [
        ("p=tls-exporter", vec![0xAA; 32]),
        ("p=tls-server-end-point", vec![0xAA; 32]),
    ] {
        let mut client =
            Client::new(Mechanism::ScramSha1Plus, "user", "pencil", flag, None).with_cb_data(&data);
        let step = run_scram(
            Mechanism::ScramSha1Plus,
            cb.clone(),
            &offered,
            &mut client,
            &users,
        );
        assert_eq!(
            step,
            SaslStep::Failure(SaslFailure::NotAuthorized),
            "{flag}"
        );
    }
}

#[test]
fn mechanism_not_offered_fails() {
    let users = Users::new();
    let lookup = |n: &str| users.lookup(n);
    let offered = offered_mechanisms(false, &ChannelBindings::default());
    let mut server = SaslServer::new(Mechanism::Plain, Default::default(), &offered);
    assert_eq!(
        server.start(Some(b"\0user\0pencil"), &lookup),
        SaslStep::Failure(SaslFailure::InvalidMechanism)
    );
    let mut server = SaslServer::new(Mechanism::ScramSha1Plus, both_cb(), &offered);
    assert_eq!(
        server.start(None, &lookup),
        SaslStep::Failure(SaslFailure::InvalidMechanism)
    );
    assert!(users.asked.borrow().is_empty());
}

#[test]
fn start_twice_or_step_first_fails() {
    let users = Users::new();
    let lookup = |n: &str| users.lookup(n);
    for mech in [Mechanism::ScramSha1, Mechanism::Plain] {
        let mut server = SaslServer::new(mech, Default::default(), &[mech]);
        assert_eq!(
            server.step(b"x", &lookup),
            SaslStep::Failure(SaslFailure::MalformedRequest)
        );
        let mut server = SaslServer::new(mech, Default::default(), &[mech]);
        assert_eq!(server.start(None, &lookup), SaslStep::Challenge(vec![]));
        assert_eq!(
            server.start(None, &lookup),
            SaslStep::Failure(SaslFailure::MalformedRequest)
        );
    }
}

// ---------------------------------------------------------------------------------------
// PLAIN.

fn plain(msg: Option<&[u8]>, then: Option<&[u8]>) -> SaslStep {
    let users = Users::new();
    let lookup = |n: &str| users.lookup(n);
    let offered = offered_mechanisms(true, &ChannelBindings::default());
    let mut server = SaslServer::new(Mechanism::Plain, Default::default(), &offered);
    let step = server.start(msg, &lookup);
    match then {
        Some(response) => {
            assert_eq!(step, SaslStep::Challenge(vec![]));
            server.step(response, &lookup)
        }
        None => step,
    }
}

#[test]
fn plain_good() {
    let ok = |authzid: Option<&str>| SaslStep::Success {
        username: "user".into(),
        authzid: authzid.map(Into::into),
        additional_data: None,
    };
    assert_eq!(plain(Some(b"\0user\0pencil"), None), ok(None));
    assert_eq!(plain(None, Some(b"\0user\0pencil")), ok(None));
    assert_eq!(
        plain(Some(b"user@example.org\0user\0pencil"), None),
        ok(Some("user@example.org"))
    );
    // No saslname escaping in PLAIN.
    assert_eq!(
        plain(Some(b"\0a,b=c\0pencil"), None),
        SaslStep::Success {
            username: "a,b=c".into(),
            authzid: None,
            additional_data: None
        }
    );
}

#[test]
fn plain_bad() {
    use SaslFailure::*;
    let fail = SaslStep::Failure;
    assert_eq!(plain(Some(b"\0user\0pencils"), None), fail(NotAuthorized));
    assert_eq!(plain(Some(b"\0user\0Pencil"), None), fail(NotAuthorized));
    assert_eq!(plain(Some(b"\0nobody\0pencil"), None), fail(NotAuthorized));
    assert_eq!(plain(Some(b"\0user\0"), None), fail(NotAuthorized));
    assert_eq!(plain(Some(b"\0\0pencil"), None), fail(MalformedRequest));
    assert_eq!(plain(Some(b""), None), fail(MalformedRequest));
    assert_eq!(plain(None, Some(b"")), fail(MalformedRequest));
    assert_eq!(plain(Some(b"user\0pencil"), None), fail(MalformedRequest));
    assert_eq!(
        plain(Some(b"\0user\0pencil\0"), None),
        fail(MalformedRequest)
    );
    assert_eq!(
        plain(Some(b"\0us\xffer\0pencil"), None),
        fail(MalformedRequest)
    );
    assert_eq!(
        plain(Some(b"\0us\x07er\0pencil"), None),
        fail(MalformedRequest)
    );
    let long = [b"\0user\0".as_slice(), &[b'p'; MAX_CLIENT_MESSAGE]].concat();
    assert_eq!(plain(Some(&long), None), fail(MalformedRequest));
}

// ---------------------------------------------------------------------------------------
// Credentials, advertisement, names.

#[test]
fn derive_and_verify_password() {
    let creds = StoredCredentials::derive("correct horse", 8);
    assert!(creds.verify_password("correct horse"));
    assert!(!creds.verify_password("correct horse "));
    assert!(!creds.verify_password(""));
    for hash in ScramHash::ALL {
        let keys = creds.keys(hash);
        assert_eq!(keys.salt.len(), 16);
        assert_eq!(keys.iterations, 8);
        assert!(keys.is_usable(hash));
        assert!(keys.verify_password(hash, "correct horse"));
    }
    assert_ne!(creds.sha1.salt, creds.sha256.salt);
    assert_ne!(
        creds.sha1.salt,
        StoredCredentials::derive("correct horse", 8).sha1.salt
    );
    // SASLprep mapping: a soft hyphen is mapped to nothing.
    assert!(creds.verify_password("correct\u{AD} horse"));

    // Keys usable for SHA-1 only (e.g. imported) still verify PLAIN.
    let mut partial = creds.clone();
    partial.sha256.stored_key.clear();
    partial.sha512.stored_key.clear();
    assert_eq!(partial.plain_hash(), Some(ScramHash::Sha1));
    assert!(partial.verify_password("correct horse"));
    partial.sha1.iterations = 0;
    assert!(!partial.verify_password("correct horse"));
}

#[test]
fn derived_credentials_work_with_scram() {
    let stored = StoredCredentials::derive("s3cret", 8);
    let lookup = |n: &str| (n == "user").then(|| stored.clone());
    let mut client = Client::new(Mechanism::ScramSha512, "user", "s3cret", "n", None);
    let mut server = SaslServer::new(Mechanism::ScramSha512, Default::default(), &SCRAM);
    let SaslStep::Challenge(first) = server.start(Some(&client.first()), &lookup) else {
        panic!("expected server-first");
    };
    let step = server.step(&client.final_message(&first), &lookup);
    assert_success(&step, &client, "user", None);
}

#[test]
fn offered_mechanisms_by_transport() {
    use Mechanism::*;
    let none = ChannelBindings::default();
    assert_eq!(
        offered_mechanisms(false, &none),
        [ScramSha512, ScramSha256, ScramSha1]
    );
    // Channel binding data without TLS makes no sense; no -PLUS then.
    assert_eq!(
        offered_mechanisms(false, &both_cb()),
        [ScramSha512, ScramSha256, ScramSha1]
    );
    assert_eq!(
        offered_mechanisms(true, &none),
        [ScramSha512, ScramSha256, ScramSha1, Plain]
    );
    let end_point_only = ChannelBindings {
        tls_exporter: None,
        tls_server_end_point: Some(vec![1]),
    };
    let all = [
        ScramSha512Plus,
        ScramSha256Plus,
        ScramSha1Plus,
        ScramSha512,
        ScramSha256,
        ScramSha1,
        Plain,
    ];
    assert_eq!(offered_mechanisms(true, &end_point_only), all);
    assert_eq!(offered_mechanisms(true, &both_cb()), all);
}

#[test]
fn channel_binding_type_names() {
    assert!(ChannelBindings::default().type_names().is_empty());
    assert_eq!(
        both_cb().type_names(),
        ["tls-exporter", "tls-server-end-point"]
    );
    let exporter_only = ChannelBindings {
        tls_exporter: Some(vec![1]),
        tls_server_end_point: None,
    };
    assert_eq!(exporter_only.type_names(), ["tls-exporter"]);
}

#[test]
fn mechanism_names() {
    for mech in Mechanism::ALL {
        assert_eq!(Mechanism::from_name(mech.name()), Some(mech));
        assert_eq!(mech.is_plus(), mech.name().ends_with("-PLUS"));
    }
    assert_eq!(Mechanism::ScramSha256Plus.name(), "SCRAM-SHA-256-PLUS");
    assert_eq!(Mechanism::from_name("scram-sha-1"), None);
    assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
    assert_eq!(SaslFailure::NotAuthorized.condition(), "not-authorized");
    assert_eq!(SaslFailure::InvalidAuthzid.condition(), "invalid-authzid");
    assert_eq!(
        SaslFailure::TemporaryAuthFailure.condition(),
        "temporary-auth-failure"
    );
}

// ---------------------------------------------------------------------------------------
// XEP-0474 SASL SCRAM Downgrade Protection.

#[test]
fn ssdp_input_matches_the_xep_example() {
    // XEP-0474 §"Full Example": SHA-1 of
    // 'SCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS\x1ftls-exporter\x1etls-server-end-point'.
    let s = super::ssdp_input(
        &[Mechanism::ScramSha1Plus, Mechanism::ScramSha1],
        &["tls-server-end-point", "tls-exporter"],
    );
    assert_eq!(
        s,
        "SCRAM-SHA-1\u{1e}SCRAM-SHA-1-PLUS\u{1f}tls-exporter\u{1e}tls-server-end-point"
    );
    assert_eq!(
        crypto::b64_encode(&crypto::h(ScramHash::Sha1, s.as_bytes())),
        "G6k/rBLDqgOhRRaCuuatSDFkJ08="
    );
    // Without XEP-0440 advertisement there is no separator at all.
    assert_eq!(
        super::ssdp_input(&[Mechanism::Plain, Mechanism::ScramSha256], &[]),
        "PLAIN\u{1e}SCRAM-SHA-256"
    );
}

#[test]
fn server_first_carries_the_ssdp_hash_and_the_proof_covers_it() {
    let users = Users::new();
    let offered = [Mechanism::ScramSha256Plus, Mechanism::ScramSha256];
    let cb = both_cb();
    let mut server = SaslServer::new(Mechanism::ScramSha256, cb.clone(), &offered);
    let lookup = |n: &str| users.lookup(n);
    let SaslStep::Challenge(first) = server.start(Some(b"n,,n=alice,r=abcdef"), &lookup) else {
        panic!("no challenge");
    };
    let first = String::from_utf8(first).unwrap();
    let h = first
        .split(',')
        .find_map(|a| a.strip_prefix("h="))
        .expect("h= in server-first");
    let expected = super::ssdp_input(&offered, &cb.type_names());
    assert_eq!(
        h,
        crypto::b64_encode(&crypto::h(ScramHash::Sha256, expected.as_bytes()))
    );
}
