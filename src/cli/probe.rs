//! `semroute probe`: one GET against a running server's HTTP face, for container health checks. The
//! runtime image is distroless (no shell, no curl), so the binary checks itself: Docker's `HEALTHCHECK`
//! runs `semroute probe http://127.0.0.1:8080/readyz`.

use std::time::Duration;

/// GETs `url` (`https://…` for a server with TLS, checked against `--tls-ca` when given) once, within `timeout`; `Ok` on a 2xx answer, an error naming the status or the failure
/// otherwise (the process then exits non-zero, which is what a health check reads).
pub async fn run(url: &str, timeout: Duration, tls: &super::ClientTlsArgs) -> anyhow::Result<()> {
    let client = super::connect::http(reqwest::Client::builder(), tls)?
        .timeout(timeout)
        .connect_timeout(timeout)
        // A health check follows no redirects: a redirect would mean the URL is not the probe endpoint.
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let status = resp.status();
    // The body says why a server is not ready (`{"status": "starting", ...}`); a short prefix is enough.
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.trim().chars().take(200).collect();
    if status.is_success() {
        println!("{url}: {status} {body}");
        Ok(())
    } else {
        anyhow::bail!("{url}: {status} {body}")
    }
}
