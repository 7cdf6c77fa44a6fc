//! `semroute keys`: the client keys file, managed offline. The server re-reads the file within seconds,
//! so a revocation or a new key needs no restart. Keys are printed once, at creation or rotation; the file
//! holds only their hashes. The changes themselves are the library's ([`keys::edit_file`]), shared with
//! the Admin API's key RPCs.

use std::path::Path;

use anyhow::Context;
use semroute::access::keys::{self, KeyEntry, KeySpec, KeysFile, Limits};
use serde_json::json;

use super::{CreateKeyArgs, KeysCommand};

/// A key's listing: everything but the secret (which the file never holds anyway).
fn listed(k: &KeyEntry) -> serde_json::Value {
    json!({
        "name": k.name, "hint": k.hint, "tenant": k.tenant, "routes": k.routes,
        "models": k.models, "limits": k.limits, "attributes": k.attributes,
        "expires_at": k.expires_at, "revoked": k.revoked,
    })
}

impl CreateKeyArgs {
    /// The new key's spec (`--attr name=value` split).
    pub fn into_spec(self) -> anyhow::Result<KeySpec> {
        let mut spec = KeySpec {
            name: self.name,
            tenant: self.tenant,
            routes: self.routes,
            models: self.models,
            limits: Limits {
                rpm: self.rpm,
                tpm: self.tpm,
                concurrency: self.concurrency,
                daily_usd: self.daily_usd,
                monthly_usd: self.monthly_usd,
            },
            expires_at: self.expires_at,
            ..Default::default()
        };
        for a in self.attributes {
            let (k, v) = a
                .split_once('=')
                .with_context(|| format!("--attr `{a}`: expected name=value"))?;
            spec.attributes.insert(k.to_string(), v.to_string());
        }
        Ok(spec)
    }
}

/// Runs one keys command.
pub fn run(file: &Path, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create(args) => {
            let spec = args.into_spec()?;
            let issued = keys::edit_file(file, |f| f.create(spec))?;
            eprintln!(
                "created `{}` in {}; the key is shown only now:",
                issued.entry.name,
                file.display()
            );
            println!("{}", issued.secret);
        }
        KeysCommand::List => {
            let f = KeysFile::load_or_new(file)?;
            let list: Vec<_> = f.keys.iter().map(listed).collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        KeysCommand::Revoke { name } => {
            let revoked = keys::edit_file(file, |f| f.revoke(&name))?;
            eprintln!("revoked {}", revoked.join(", "));
        }
        KeysCommand::Rotate { name, grace_s } => {
            let (issued, until) = keys::edit_file(file, |f| f.rotate(&name, grace_s))?;
            eprintln!(
                "rotated `{name}`: the old key works until {until}; the new key is shown only now:"
            );
            println!("{}", issued.secret);
        }
    }
    Ok(())
}
