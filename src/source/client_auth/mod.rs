//! How a client proves who it is to the token endpoint: a client secret
//! (`client_secret_basic`, `client_secret_post`), a signed client assertion
//! (`private_key_jwt`, `client_secret_jwt`, RFC 7523), or a client
//! certificate (`tls_client_auth`, RFC 8705).

#[cfg(feature = "rustls")]
mod identity;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub use identity::{ClientIdentity, IdentityError};
