//! How the CLI's clients reach a server: plain `http://` addresses as they are, `https://` ones over TLS
//! trusting `--tls-ca` (or the public web roots without it), with a client certificate where Admin asks
//! for one.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::ClientTlsArgs;

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("{what} {}: {e}", path.display()))
}

fn is_https(addr: &str) -> bool {
    addr.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// A gRPC endpoint for `addr`; `identity` is a client certificate and key (PEM files) to present.
pub fn endpoint(
    addr: &str,
    tls: &ClientTlsArgs,
    identity: Option<(&Path, &Path)>,
) -> anyhow::Result<Endpoint> {
    let endpoint = Endpoint::from_shared(addr.to_string())
        .map_err(|e| anyhow::anyhow!("`{addr}` is not a usable address: {e}"))?;
    if !is_https(addr) {
        anyhow::ensure!(
            tls.tls_ca.is_none() && identity.is_none(),
            "--tls-ca and client certificates are for https:// addresses, and `{addr}` is not one"
        );
        return Ok(endpoint);
    }
    let mut config = ClientTlsConfig::new();
    config = match &tls.tls_ca {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca, "--tls-ca")?)),
        None => config.with_webpki_roots(),
    };
    if let Some((cert, key)) = identity {
        config = config.identity(Identity::from_pem(
            read(cert, "--client-cert")?,
            read(key, "--client-key")?,
        ));
    }
    endpoint
        .tls_config(config)
        .map_err(|e| anyhow::anyhow!("TLS for {addr}: {e}"))
}

/// An HTTP client builder that trusts `--tls-ca` alone when it is given.
pub fn http(
    builder: reqwest::ClientBuilder,
    tls: &ClientTlsArgs,
) -> anyhow::Result<reqwest::ClientBuilder> {
    let Some(ca) = &tls.tls_ca else {
        return Ok(builder);
    };
    let pem = read(ca, "--tls-ca")?;
    let mut builder = builder.tls_built_in_root_certs(false);
    for cert in reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| anyhow::anyhow!("--tls-ca {}: {e}", ca.display()))?
    {
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder)
}
