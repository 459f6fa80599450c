//! TEMPORARY STUB
use std::sync::Arc;
pub struct TlsContext {
    pub starttls: Arc<rustls::ServerConfig>,
    pub direct_tls: Arc<rustls::ServerConfig>,
}
#[derive(Debug)]
pub struct TlsError(pub String);
impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl TlsContext {
    pub fn load(_config: &crate::config::Config) -> Result<TlsContext, TlsError> {
        todo!()
    }
    pub fn server_end_point(&self, _sni: Option<&str>) -> Option<Vec<u8>> {
        todo!()
    }
    pub fn describe(&self, _config: &crate::config::Config) -> Vec<String> {
        todo!()
    }
}
pub fn tls_exporter(_conn: &rustls::ServerConnection) -> Option<Vec<u8>> {
    todo!()
}
pub struct ConnectionLimiter;
pub struct ConnectionPermit;
impl ConnectionLimiter {
    pub fn new(_a: usize, _b: usize) -> Self {
        ConnectionLimiter
    }
    pub fn try_acquire(&self, _ip: std::net::IpAddr) -> Option<ConnectionPermit> {
        todo!()
    }
}
pub mod listener {
    pub async fn bind_all(_addrs: &[String]) -> std::io::Result<Vec<tokio::net::TcpListener>> {
        todo!()
    }
}
