//! The client certificate and key for mutual TLS (RFC 8705).
//! (Placeholder until the full type lands.)

/// A client certificate and its key.
#[derive(Clone)]
pub struct ClientIdentity {
    identity: reqwest::Identity,
}

impl ClientIdentity {
    /// The identity for a reqwest client.
    pub fn reqwest_identity(&self) -> reqwest::Identity {
        self.identity.clone()
    }
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity")
    }
}
