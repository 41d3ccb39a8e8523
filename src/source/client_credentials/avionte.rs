//! The preset for Avionté's partner authorization API.

use super::{AuthStyle, ClientCredentials, ClientCredentialsBuilder, ClientSecret};

/// The token URL of Avionté's partner authorization API.
pub const AVIONTE_TOKEN_URL: &str = "https://api.avionte.com/authorize/token";

/// The scope Avionté's BOLD Front Office API (and its Partner Additions API)
/// asks for; [`ClientCredentials::avionte`] requests it.
pub const AVIONTE_FRONT_OFFICE_SCOPE: &str = "avionte.aero.compasintegrationservice";

impl ClientCredentials {
    /// A builder for Avionté's partner authorization API
    /// ([`AVIONTE_TOKEN_URL`]): the API key in the `x-api-key` header, the
    /// client id and secret in the form, and the BOLD Front Office scope
    /// ([`AVIONTE_FRONT_OFFICE_SCOPE`]; replace it with
    /// [`scopes`](ClientCredentialsBuilder::scopes) if Avionté gave you
    /// another).
    ///
    /// ```
    /// use tower_bearer::source::client_credentials::ClientCredentials;
    ///
    /// let source = ClientCredentials::avionte("api-key", "client-id", "client-secret").build().unwrap();
    /// assert_eq!(source.token_url().unwrap().as_str(), "https://api.avionte.com/authorize/token");
    /// assert_eq!(source.scopes(), ["avionte.aero.compasintegrationservice"]);
    /// ```
    pub fn avionte(
        api_key: impl Into<ClientSecret>,
        client_id: impl Into<String>,
        client_secret: impl Into<ClientSecret>,
    ) -> ClientCredentialsBuilder {
        Self::builder(AVIONTE_TOKEN_URL, client_id)
            .client_secret(client_secret)
            .auth_style(AuthStyle::RequestBody)
            .header("x-api-key", api_key)
            .scope(AVIONTE_FRONT_OFFICE_SCOPE)
    }
}
