//! TEMPORARY STUB (replaced by the real implementation on merge).
pub mod credentials;
use credentials::StoredCredentials;
#[derive(Debug, Clone, Default)]
pub struct ChannelBindings {
    pub tls_exporter: Option<Vec<u8>>,
    pub tls_server_end_point: Option<Vec<u8>>,
}
impl ChannelBindings {
    pub fn type_names(&self) -> Vec<&'static str> {
        todo!()
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    ScramSha1,
    ScramSha1Plus,
    ScramSha256,
    ScramSha256Plus,
    ScramSha512,
    ScramSha512Plus,
    Plain,
}
impl Mechanism {
    pub fn name(self) -> &'static str {
        todo!()
    }
    pub fn from_name(_s: &str) -> Option<Mechanism> {
        todo!()
    }
    pub fn is_plus(self) -> bool {
        todo!()
    }
}
pub fn offered_mechanisms(_tls: bool, _cb: &ChannelBindings) -> Vec<Mechanism> {
    todo!()
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslFailure {
    Aborted,
    AccountDisabled,
    CredentialsExpired,
    EncryptionRequired,
    IncorrectEncoding,
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    MechanismTooWeak,
    NotAuthorized,
    TemporaryAuthFailure,
}
impl SaslFailure {
    pub fn condition(self) -> &'static str {
        todo!()
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    Challenge(Vec<u8>),
    Success {
        username: String,
        authzid: Option<String>,
        additional_data: Option<Vec<u8>>,
    },
    Failure(SaslFailure),
}
pub struct SaslServer;
impl SaslServer {
    pub fn new(_mech: Mechanism, _cb: ChannelBindings, _offered: &[Mechanism]) -> SaslServer {
        todo!()
    }
    pub fn start(
        &mut self,
        _initial: Option<&[u8]>,
        _lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> SaslStep {
        todo!()
    }
    pub fn step(
        &mut self,
        _response: &[u8],
        _lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> SaslStep {
        todo!()
    }
}
