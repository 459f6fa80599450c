//! The service modules (disco, ping, version, time, vCard, private storage, registration) as
//! one list for the server, and the two helpers they share: reporting a storage failure and
//! reading back an XML document they stored.

use crate::config::Config;
use crate::modules::{
    disco::DiscoModule, pep::PepModule, ping::PingModule, private::PrivateModule, push::PushModule,
    register::RegisterModule, time::TimeModule, vcard::VcardModule, version::VersionModule, Module,
};
use crate::proto::StanzaError;
use crate::storage::StorageError;
use crate::xml::Element;

/// The service modules for this configuration.
pub fn all(config: &Config) -> Vec<Box<dyn Module>> {
    let mut modules: Vec<Box<dyn Module>> = vec![
        Box::new(DiscoModule),
        Box::new(PingModule),
        Box::new(VersionModule),
        Box::new(TimeModule),
        Box::new(VcardModule),
        Box::new(PrivateModule),
        Box::new(PepModule::default()),
        Box::new(RegisterModule {
            allow: config.registration.allow,
        }),
    ];
    if config.push.enabled {
        modules.push(Box::new(PushModule::new(&config.push)));
    }
    modules
}

/// A storage failure becomes `internal-server-error`; the detail goes to the log, not to the
/// client.
pub(crate) fn storage_failed(module: &'static str, e: StorageError) -> StanzaError {
    tracing::error!(module, error = %e, "storage failure");
    StanzaError::internal_server_error()
}

/// Parse an XML document a module stored earlier (`internal-server-error` if it is damaged).
pub(crate) fn load_stored(module: &'static str, xml: &str) -> Result<Element, StanzaError> {
    crate::xml::parser::parse_element(xml).map_err(|e| {
        tracing::error!(module, error = ?e, "stored XML does not parse");
        StanzaError::internal_server_error()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ns;

    #[test]
    fn names_are_unique_and_payloads_disjoint() {
        let mut cfg = Config::default();
        cfg.registration.allow = true;
        let mods = all(&cfg);
        let mut names: Vec<_> = mods.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), mods.len());
        let mut payloads: Vec<_> = mods.iter().flat_map(|m| m.iq_payloads().iter()).collect();
        let n = payloads.len();
        payloads.sort_unstable();
        payloads.dedup();
        assert_eq!(payloads.len(), n, "two modules claim the same IQ payload");
    }

    #[test]
    fn register_feature_is_advertised_for_password_change_either_way() {
        let features = |allow: bool| {
            let mut cfg = Config::default();
            cfg.registration.allow = allow;
            all(&cfg)
                .iter()
                .flat_map(|m| m.server_features().iter().copied())
                .collect::<Vec<_>>()
        };
        assert!(features(true).contains(&ns::REGISTER));
        assert!(features(false).contains(&ns::REGISTER));
        assert!(features(false).contains(&ns::DISCO_INFO));
    }
}
