//! Statuses for requests tonic could not decode. Tonic answers a malformed
//! protobuf with INTERNAL and a message over the size limit with
//! OUT_OF_RANGE, before any handler runs; both are the caller's fault.
//! [`DecodeStatusLayer`] rewrites those answers (INVALID_ARGUMENT,
//! RESOURCE_EXHAUSTED); streamed uploads map them in `api::stream_error`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::{Code, Status};

/// The status a client should get for a request-decoding failure, if `s`
/// is one.
pub(crate) fn request_status(s: &Status) -> Option<Status> {
    let m = s.message();
    match s.code() {
        Code::Internal if m.starts_with("failed to decode Protobuf message") => Some(Status::invalid_argument(
            format!("the request is not a valid protobuf message: {m}"),
        )),
        Code::OutOfRange if m.contains("decoded message length too large") => Some(Status::resource_exhausted(
            format!("a request message is over the size limit: {m}"),
        )),
        _ => None,
    }
}

/// The tower layer that rewrites an answer tonic gave to a request it
/// could not decode (such answers travel in the headers: "trailers-only").
#[derive(Clone, Copy, Default)]
pub struct DecodeStatusLayer;

impl<S> tower::Layer<S> for DecodeStatusLayer {
    type Service = DecodeStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DecodeStatus { inner }
    }
}

#[derive(Clone)]
pub struct DecodeStatus<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for DecodeStatus<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut res = fut.await?;
            if let Some(s) = Status::from_header_map(res.headers())
                && let Some(better) = request_status(&s)
            {
                res.headers_mut().remove(Status::GRPC_MESSAGE);
                let _ = better.add_header(res.headers_mut());
            }
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_failures_are_the_callers() {
        let s = request_status(&Status::internal(
            "failed to decode Protobuf message: StatRequest.namespace: invalid wire type",
        ))
        .unwrap();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("invalid wire type"));
        let s = request_status(&Status::out_of_range(
            "Error, decoded message length too large: found 2000000 bytes, the limit is: 1048576 bytes",
        ))
        .unwrap();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(request_status(&Status::internal("commit failed")).is_none());
        assert!(request_status(&Status::out_of_range("offset past the end")).is_none());
    }
}
