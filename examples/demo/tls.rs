//! `--cert`, `--key` and `--ca`: the client certificate `--auth tls`
//! presents to the token endpoint and the API, and an extra trusted root
//! for both, read once when the arguments are parsed.

use std::path::PathBuf;

use tower_bearer::ClientCredentialsBuilder;
#[cfg(feature = "rustls")]
use tower_bearer::source::client_auth::ClientIdentity;

/// The files, as given.
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

/// The files, read and checked.
#[derive(Default)]
pub struct Tls {
    #[cfg(feature = "rustls")]
    identity: Option<ClientIdentity>,
    #[cfg(feature = "rustls")]
    ca: Option<reqwest::Certificate>,
    ca_path: Option<PathBuf>,
}

/// The longest `--ca` file read: 1 MiB, a bundle of a few hundred roots.
#[cfg(feature = "rustls")]
const MAX_CA_BYTES: u64 = 1024 * 1024;

impl TlsFiles {
    /// Reads the certificate and key when `client_certificate` (`--auth
    /// tls`), and the root. The messages name the flag and the file, never
    /// what is in it.
    #[cfg(feature = "rustls")]
    pub fn read(self, client_certificate: bool) -> Result<Tls, String> {
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) if client_certificate => Some(
                ClientIdentity::from_files(cert, key)
                    .map_err(|e| format!("--cert and --key: {e}"))?,
            ),
            _ => None,
        };
        let ca = match &self.ca {
            Some(path) => {
                use std::io::Read as _;
                let unreadable = |e: std::io::Error| format!("--ca {}: {e}", path.display());
                let mut pem = Vec::new();
                std::fs::File::open(path)
                    .map_err(unreadable)?
                    .take(MAX_CA_BYTES)
                    .read_to_end(&mut pem)
                    .map_err(unreadable)?;
                // reqwest reads the PEM only when the client is built: read
                // it here, to say which flag is wrong.
                use rustls_pki_types::CertificateDer;
                use rustls_pki_types::pem::PemObject as _;
                let certificates: Result<Vec<_>, _> =
                    CertificateDer::pem_slice_iter(&pem).collect();
                if !certificates.is_ok_and(|c| !c.is_empty()) {
                    return Err(format!("--ca {}: not a PEM certificate", path.display()));
                }
                Some(
                    reqwest::Certificate::from_pem(&pem)
                        .map_err(|_| format!("--ca {}: not a PEM certificate", path.display()))?,
                )
            }
            None => None,
        };
        Ok(Tls {
            identity,
            ca,
            ca_path: self.ca,
        })
    }

    #[cfg(not(feature = "rustls"))]
    pub fn read(self, _client_certificate: bool) -> Result<Tls, String> {
        if self.cert.is_some() || self.key.is_some() || self.ca.is_some() {
            return Err("--cert, --key and --ca need the rustls feature (on by default)".into());
        }
        Ok(Tls::default())
    }
}

impl Tls {
    /// The API's HTTP client: the client certificate and the root too, so
    /// that certificate-bound tokens are accepted.
    pub fn api_client(&self) -> Result<reqwest::Client, String> {
        #[allow(unused_mut)]
        let mut client = reqwest::Client::builder();
        #[cfg(feature = "rustls")]
        {
            if let Some(identity) = &self.identity {
                client = client.identity(identity.reqwest_identity());
            }
            if let Some(ca) = &self.ca {
                client = client.tls_certs_merge([ca.clone()]);
            }
        }
        client
            .build()
            .map_err(|e| format!("the API's HTTP client could not be built: {e}"))
    }

    /// The token source's settings: the client certificate as its
    /// authentication, and the root.
    pub fn on_source(&self, builder: ClientCredentialsBuilder) -> ClientCredentialsBuilder {
        #[allow(unused_mut)]
        let mut builder = builder;
        #[cfg(feature = "rustls")]
        {
            if let Some(identity) = &self.identity {
                builder = builder.tls_client_auth(identity.clone());
            }
            if let Some(ca) = &self.ca {
                builder = builder.add_root_certificate(ca.clone());
            }
        }
        builder
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("Tls");
        #[cfg(feature = "rustls")]
        s.field("identity", &self.identity);
        s.field("ca", &self.ca_path).finish()
    }
}
