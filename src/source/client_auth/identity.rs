//! The client certificate and key for mutual TLS (RFC 8705).
