//! A tonic `Channel` under the bearer layer, handed to a generated client
//! (tonic-health's), against a real tonic server on loopback that checks the
//! `authorization` metadata.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use support::{counting_source, failing_source};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;
use tower::ServiceBuilder;
use tower_bearer::{BearerAuth, BearerAuthLayer, ErrorClass, Scope, SourceError};

/// A gRPC health server that answers UNAUTHENTICATED unless the call carries
/// `authorization: Bearer <accepted>`. Stopped when dropped.
struct HealthServer {
    addr: SocketAddr,
    // Every `authorization` value the server was sent, in order.
    seen: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
    _reporter: HealthReporter,
}

impl HealthServer {
    async fn start(accepted: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let check_token = move |request: tonic::Request<()>| {
            let auth = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            log.lock().unwrap().push(auth.clone());
            if auth == format!("Bearer {accepted}") {
                Ok(request)
            } else {
                Err(Status::unauthenticated("missing or invalid bearer token"))
            }
        };
        let (reporter, health) = tonic_health::server::health_reporter();
        let server = Server::builder()
            .layer(tonic::service::InterceptorLayer::new(check_token))
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener));
        let task = tokio::spawn(async move { server.await.unwrap() });
        Self {
            addr,
            seen,
            task,
            _reporter: reporter,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn health_client(channel: Channel, layer: BearerAuthLayer) -> HealthClient<BearerAuth<Channel>> {
    HealthClient::new(ServiceBuilder::new().layer(layer).service(channel))
}

async fn check(client: &mut HealthClient<BearerAuth<Channel>>) -> Result<ServingStatus, Status> {
    let response = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(response.into_inner().status())
}

#[tokio::test]
async fn the_generated_client_calls_with_the_token() {
    let server = HealthServer::start("grpc-token").await;
    let (source, fetches) = counting_source(&["grpc-token"]);
    let mut client = health_client(server.channel().await, BearerAuthLayer::new(source));

    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);

    assert_eq!(server.seen(), ["Bearer grpc-token", "Bearer grpc-token"]);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_permanent_token_failure_reaches_the_caller_as_a_status_that_says_why() {
    let server = HealthServer::start("grpc-token").await;
    let source = failing_source(SourceError::new(
        "invalid_client: the client secret is wrong",
        ErrorClass::Permanent,
    ));
    let mut client = health_client(server.channel().await, BearerAuthLayer::new(source));

    let status = check(&mut client).await.unwrap_err();

    assert_eq!(
        status.message(),
        "no token could be had: the token source failed: invalid_client: the client secret is wrong"
    );
    #[cfg(feature = "tonic")]
    assert_eq!(status.code(), Code::Unauthenticated);
    #[cfg(not(feature = "tonic"))]
    assert_eq!(status.code(), Code::Unknown);
    // Never sent without a token.
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn a_transient_token_failure_reaches_the_caller_as_a_status_that_says_why() {
    let server = HealthServer::start("grpc-token").await;
    let source = failing_source(SourceError::new(
        "the identity provider answered 503",
        ErrorClass::TRANSIENT,
    ));
    let mut client = health_client(server.channel().await, BearerAuthLayer::new(source));

    let status = check(&mut client).await.unwrap_err();

    assert_eq!(
        status.message(),
        "no token could be had: the token source failed: the identity provider answered 503"
    );
    #[cfg(feature = "tonic")]
    assert_eq!(status.code(), Code::Unavailable);
    #[cfg(not(feature = "tonic"))]
    assert_eq!(status.code(), Code::Unknown);
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn an_unauthenticated_answer_throws_the_token_away() {
    let server = HealthServer::start("second").await;
    let (source, fetches) = counting_source(&["first", "second"]);
    let layer = BearerAuthLayer::new(source);
    let cache = layer.cache().clone();
    let mut client = health_client(server.channel().await, layer);

    // The server's own UNAUTHENTICATED reaches the caller unchanged...
    let status = check(&mut client).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "missing or invalid bearer token");
    // ...and the token it rejected is gone.
    assert_eq!(cache.stats().invalidations, 1);

    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);
    assert_eq!(server.seen(), ["Bearer first", "Bearer second"]);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

/// A generated client sends relative URIs; the `Channel` adds the origin
/// below the layer. A restricted scope must never let such a call go out
/// bare: without a base origin the call fails saying why, with one the
/// token is attached.
#[tokio::test]
async fn a_restricted_scope_never_sends_a_relative_grpc_call_bare() {
    let server = HealthServer::start("grpc-token").await;
    let origin = format!("http://{}", server.addr);

    let (source, fetches) = counting_source(&["grpc-token"]);
    let scope = Scope::origins([origin.as_str()]).unwrap();
    let mut client = health_client(
        server.channel().await,
        BearerAuthLayer::new(source).scope(scope.clone()),
    );
    let status = check(&mut client).await.unwrap_err();
    assert!(
        status.message().contains("Scope::base_origin"),
        "{}",
        status.message()
    );
    assert!(server.seen().is_empty(), "nothing was sent bare");
    assert_eq!(fetches.load(Ordering::SeqCst), 0);

    let (source, _) = counting_source(&["grpc-token"]);
    let based = scope.base_origin(&origin).unwrap();
    let mut client = health_client(
        server.channel().await,
        BearerAuthLayer::new(source).scope(based),
    );
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);
    assert_eq!(server.seen(), ["Bearer grpc-token"]);

    // A base origin the scope does not allow: sent without the token, as
    // for any request to another origin.
    let (source, _) = counting_source(&["grpc-token"]);
    let elsewhere = Scope::origins(["http://127.0.0.1:1"])
        .unwrap()
        .base_origin(&origin)
        .unwrap();
    let mut client = health_client(
        server.channel().await,
        BearerAuthLayer::new(source).scope(elsewhere),
    );
    assert_eq!(
        check(&mut client).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(server.seen(), ["Bearer grpc-token", ""]);
}
