//! The Admin service's door: a bearer token, and with `--admin-client-ca` a verified TLS client
//! certificate as well.

use std::sync::Arc;

use tonic::{Request, Status};

/// A tonic interceptor that admits requests carrying `authorization: Bearer <token>` (and, when told to,
/// arriving over a TLS connection whose client presented a certificate).
#[derive(Clone)]
pub struct BearerAuth {
    token: Arc<[u8]>,
    client_cert: bool,
}

impl BearerAuth {
    /// Admits requests with exactly this token.
    pub fn new(token: &str) -> Self {
        Self {
            token: token.as_bytes().into(),
            client_cert: false,
        }
    }

    /// Also requires a client certificate. The listener's TLS verifier checked any certificate presented
    /// against the Admin client CA during the handshake (a bad one fails the handshake), so here it is
    /// enough that one was presented.
    pub fn with_client_cert(mut self, required: bool) -> Self {
        self.client_cert = required;
        self
    }
}

/// Compares in time independent of where the first difference is, so the token can't be guessed byte by
/// byte from response times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        if self.client_cert && req.peer_certs().is_none_or(|c| c.is_empty()) {
            return Err(Status::unauthenticated(
                "admin calls need a TLS client certificate signed by the server's --admin-client-ca",
            ));
        }
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        match presented {
            Some(t) if constant_time_eq(t.trim().as_bytes(), &self.token) => Ok(req),
            Some(_) => Err(Status::unauthenticated("invalid admin token")),
            None => Err(Status::unauthenticated(
                "admin calls need `authorization: Bearer <token>`",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn with(v: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(v) = v {
            r.metadata_mut().insert("authorization", v.parse().unwrap());
        }
        r
    }

    #[test]
    fn checks_tokens() {
        let mut a = BearerAuth::new("s3cret");
        assert!(a.call(with(Some("Bearer s3cret"))).is_ok());
        assert_eq!(
            a.call(with(Some("Bearer nope"))).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            a.call(with(Some("s3cret"))).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            a.call(with(None)).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn a_required_client_certificate_is_checked_before_the_token() {
        let mut a = BearerAuth::new("s3cret").with_client_cert(true);
        let e = a.call(with(Some("Bearer s3cret"))).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(
            e.message().contains("client certificate"),
            "{}",
            e.message()
        );
    }
}
