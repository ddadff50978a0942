//! A layer around the gRPC service that looks at each request before its handler runs and
//! rewrites the headers of its response once the handler has answered (before any streamed
//! data): what [`SessionCookies`](crate::service::sessions::SessionCookies) and
//! [`ErrorStatuses`](crate::service::error_statuses::ErrorStatuses) are.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http::{HeaderMap, Request as HttpRequest, Response};
use tonic::codegen::Service;
use tonic::server::NamedService;

/// What a [`HeaderLayer`] does around each call.
pub trait AroundCall: Clone {
    /// What the layer carries from a request to its response.
    type Carry: Send + 'static;

    /// Looks at `request` (and may add to its extensions) before the handler runs.
    fn before<B>(&self, request: &mut HttpRequest<B>) -> Self::Carry;

    /// Rewrites the response's `headers`.
    fn after(carry: Self::Carry, headers: &mut HeaderMap);
}

/// The layer: wraps the gRPC service `inner` with `around`.
#[derive(Debug, Clone)]
pub struct HeaderLayer<S, A> {
    inner: S,
    around: A,
}

impl<S, A> HeaderLayer<S, A> {
    /// Wraps `inner` with `around`.
    pub fn new(inner: S, around: A) -> Self {
        Self { inner, around }
    }
}

impl<S, A, B, R> Service<HttpRequest<B>> for HeaderLayer<S, A>
where
    S: Service<HttpRequest<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    A: AroundCall,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: HttpRequest<B>) -> Self::Future {
        let carry = self.around.before(&mut request);
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            A::after(carry, response.headers_mut());
            Ok(response)
        })
    }
}

impl<S: NamedService, A> NamedService for HeaderLayer<S, A> {
    const NAME: &'static str = S::NAME;
}
