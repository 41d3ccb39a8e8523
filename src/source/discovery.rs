//! The token endpoint found from the issuer: OpenID Connect discovery and
//! RFC 8414 authorization server metadata.
