//! TEMPORARY STUB
pub fn preauth_register(
    _ctx: &super::ModuleContext,
    _domain: &str,
    _request: &crate::proto::Stanza,
) -> crate::proto::Stanza {
    todo!()
}
