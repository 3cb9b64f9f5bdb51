//! TLS for the base's own HTTP clients (a module's outbound requests, `installBiz`
//! downloads): rustls with the ring provider and Mozilla's root certificates, so no client
//! depends on the machine's certificate store.

/// A client configuration trusting the webpki roots, with rustls' safe default versions.
pub(crate) fn client_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth()
}
