//! Bearer-token check for the Admin service.

use std::sync::Arc;

use tonic::{Request, Status};

/// A tonic interceptor that admits requests carrying `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct BearerAuth {
    token: Arc<[u8]>,
}

impl BearerAuth {
    /// Admits requests with exactly this token.
    pub fn new(token: &str) -> Self {
        Self {
            token: token.as_bytes().into(),
        }
    }
}

/// Compares in time independent of where the first difference is, so the token can't be guessed byte by
/// byte from response times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
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
}
