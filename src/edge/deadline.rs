//! The caller's deadline, from `grpc-timeout` (gRPC) or `x-request-timeout` / `x-stainless-timeout`
//! (HTTP; seconds, the latter sent by the official OpenAI SDKs), fixed when the request arrives.

use std::time::{Duration, Instant};

use http::HeaderMap;

/// When the caller stops waiting; put in the request's extensions by [`super::DoorLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

/// HTTP headers that carry a timeout in seconds (decimal), in order of preference.
pub const HTTP_TIMEOUT_HEADERS: [&str; 2] = ["x-request-timeout", "x-stainless-timeout"];

/// Longest timeout taken from a caller: beyond it, the configured default applies (a year-long timeout
/// means none).
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Parses gRPC's `grpc-timeout` value: 1–8 digits and a unit (H, M, S, m, u, n). `None` when absent or
/// malformed (tonic answers a malformed one itself).
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    let d = match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    Some(d.min(MAX_TIMEOUT))
}

/// The HTTP timeout the caller sent, in seconds; `Err` names the header whose value is not a
/// non-negative number.
pub fn http_timeout(headers: &HeaderMap) -> Result<Option<Duration>, String> {
    for name in HTTP_TIMEOUT_HEADERS {
        let Some(v) = headers.get(name) else {
            continue;
        };
        let secs = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| {
                format!("header {name}: expected a timeout in seconds (a non-negative number)")
            })?;
        return Ok(Some(
            Duration::try_from_secs_f64(secs)
                .unwrap_or(MAX_TIMEOUT)
                .min(MAX_TIMEOUT),
        ));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &'static str, v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(name, v.parse().unwrap());
        m
    }

    #[test]
    fn grpc_timeouts_parse_every_unit() {
        assert_eq!(
            grpc_timeout(&h("grpc-timeout", "250m")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            grpc_timeout(&h("grpc-timeout", "2S")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            grpc_timeout(&h("grpc-timeout", "1H")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            grpc_timeout(&h("grpc-timeout", "99999999H")),
            Some(MAX_TIMEOUT)
        );
        assert_eq!(grpc_timeout(&h("grpc-timeout", "5x")), None);
        assert_eq!(grpc_timeout(&h("grpc-timeout", "m")), None);
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn http_timeouts_are_seconds_and_bad_ones_name_the_header() {
        assert_eq!(
            http_timeout(&h("x-request-timeout", "0.25")),
            Ok(Some(Duration::from_millis(250)))
        );
        assert_eq!(
            http_timeout(&h("x-stainless-timeout", "600")),
            Ok(Some(Duration::from_secs(600)))
        );
        let e = http_timeout(&h("x-request-timeout", "soon")).unwrap_err();
        assert!(e.contains("x-request-timeout"), "{e}");
        assert!(http_timeout(&h("x-request-timeout", "-1")).is_err());
        assert_eq!(http_timeout(&HeaderMap::new()), Ok(None));
    }
}
