//! TEMPORARY STUB
use super::*;
pub fn export(_s: &dyn Storage, _d: &[String]) -> Result<String> {
    todo!()
}
#[derive(Debug)]
pub struct ImportReport;
pub fn import(_s: &dyn Storage, _x: &str) -> Result<ImportReport> {
    todo!()
}
