//! The process's TLS crypto provider.

use std::sync::Once;

/// Makes ring rustls's process-wide crypto provider, once, before any TLS configuration is built.
///
/// The dependency tree enables both of rustls's providers (tonic's TLS uses ring, the S3 client
/// aws-lc-rs), and with two enabled rustls refuses to choose one itself: building a TLS config
/// would panic. A provider installed earlier (by an embedding program) is kept.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means a provider is installed already, which is what is needed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
