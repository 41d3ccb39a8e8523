//! A tonic `Channel` under the bearer layer, handed to a generated client.
//!
//! Starts a gRPC health server on loopback that requires
//! `authorization: Bearer <token>`, calls it through tonic-health's generated
//! `HealthClient`, then shows what a caller sees when no token can be had: a
//! `tonic::Status` that says why (with the crate feature `tonic`, coded
//! `UNAVAILABLE` for a transient failure and `UNAUTHENTICATED` for a
//! permanent one).
//!
//! ```text
//! cargo run --example tonic_client --features tonic
//! ```

use std::convert::Infallible;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::Status;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceBuilder;
use tower_bearer::{BearerAuthLayer, ErrorClass, SourceError, Token, source::FnSource};

/// The server side: only calls carrying the expected bearer token get in.
fn check_token(request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
    match request.metadata().get("authorization") {
        Some(value) if value == "Bearer grpc-demo-token" => Ok(request),
        _ => Err(Status::unauthenticated("missing or invalid bearer token")),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        Server::builder()
            .layer(tonic::service::InterceptorLayer::new(check_token))
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;

    // Stands in for an OAuth2 client-credentials source.
    let source = FnSource::new(|| async {
        Ok::<_, Infallible>(
            Token::bearer("grpc-demo-token").with_lifetime(Duration::from_secs(3600)),
        )
    });
    let authed = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service(channel.clone());
    let mut client = HealthClient::new(authed);
    let response = client.check(HealthCheckRequest::default()).await?;
    println!("with a token: {:?}", response.into_inner().status());

    // A source that cannot get a token: the call is not sent.
    for class in [ErrorClass::TRANSIENT, ErrorClass::Permanent] {
        let failing = FnSource::new(move || async move {
            let why = if class.is_transient() {
                "the identity provider answered 503"
            } else {
                "invalid_client: the client secret is wrong"
            };
            Err::<Token, _>(SourceError::new(why, class))
        });
        let authed = ServiceBuilder::new()
            .layer(BearerAuthLayer::new(failing))
            .service(channel.clone());
        let status = HealthClient::new(authed)
            .check(HealthCheckRequest::default())
            .await
            .expect_err("no token, no call");
        println!("without a token: {:?}: {}", status.code(), status.message());
    }
    Ok(())
}
