//! Transport: TLS certificates and listeners. (STUB)
