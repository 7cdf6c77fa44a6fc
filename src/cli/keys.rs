//! `semroute keys`: the client keys file, managed offline. The server re-reads the file within seconds,
//! so a revocation or a new key needs no restart. Keys are printed once, at creation or rotation; the file
//! holds only their hashes.

use std::path::Path;

use anyhow::Context;
use semroute::access::keys::{self, KeysFile, Limits};
use serde_json::json;

use super::KeysCommand;

fn load_or_new(file: &Path) -> anyhow::Result<KeysFile> {
    if file.exists() {
        return Ok(KeysFile::load(file)?);
    }
    Ok(KeysFile {
        required: true,
        ..Default::default()
    })
}

/// Runs one keys command.
pub fn run(file: &Path, command: KeysCommand) -> anyhow::Result<()> {
    let mut f = load_or_new(file)?;
    match command {
        KeysCommand::Create {
            name,
            tenant,
            routes,
            models,
            rpm,
            tpm,
            concurrency,
            daily_usd,
            monthly_usd,
            expires_at,
            attributes,
        } => {
            if name.contains('@') {
                anyhow::bail!("a key's name cannot contain `@` (rotation uses it)");
            }
            if f.keys.iter().any(|k| k.name == name) {
                anyhow::bail!("a key named `{name}` exists: rotate it, or choose another name");
            }
            let (mut entry, key) = keys::new_entry(&name)?;
            entry.tenant = tenant;
            entry.routes = routes;
            entry.models = models;
            entry.limits = Limits {
                rpm,
                tpm,
                concurrency,
                daily_usd,
                monthly_usd,
            };
            entry.expires_at = expires_at;
            for a in attributes {
                let (k, v) = a
                    .split_once('=')
                    .with_context(|| format!("--attr `{a}`: expected name=value"))?;
                entry.attributes.insert(k.to_string(), v.to_string());
            }
            f.keys.push(entry);
            save(file, &f)?;
            eprintln!(
                "created `{name}` in {}; the key is shown only now:",
                file.display()
            );
            println!("{key}");
        }
        KeysCommand::List => {
            let list: Vec<_> = f
                .keys
                .iter()
                .map(|k| {
                    json!({
                        "name": k.name, "hint": k.hint, "tenant": k.tenant, "routes": k.routes,
                        "models": k.models, "limits": k.limits, "attributes": k.attributes,
                        "expires_at": k.expires_at, "revoked": k.revoked,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        KeysCommand::Revoke { name } => {
            let k = f
                .keys
                .iter_mut()
                .find(|k| k.name == name)
                .ok_or_else(|| keys::KeysError::UnknownKey(name.clone()))?;
            k.revoked = true;
            save(file, &f)?;
            eprintln!("revoked `{name}`");
        }
        KeysCommand::Rotate { name, grace_s } => {
            let i = f
                .keys
                .iter()
                .position(|k| k.name == name)
                .ok_or_else(|| keys::KeysError::UnknownKey(name.clone()))?;
            let (fresh, key) = keys::new_entry(&name)?;
            let until = jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(grace_s as i64))
                .context("grace period too long")?;
            // The old key keeps its rights and limits under a new name until the grace period ends.
            let mut old = f.keys[i].clone();
            old.name = format!("{name}@{}", old.hint);
            old.expires_at = Some(
                match old
                    .expires_at
                    .as_deref()
                    .and_then(|e| e.parse::<jiff::Timestamp>().ok())
                {
                    Some(e) if e < until => e.to_string(),
                    _ => until.to_string(),
                },
            );
            let current = &mut f.keys[i];
            current.hash = fresh.hash;
            current.hint = fresh.hint;
            current.revoked = false;
            f.keys.push(old);
            save(file, &f)?;
            eprintln!(
                "rotated `{name}`: the old key works until {until}; the new key is shown only now:"
            );
            println!("{key}");
        }
    }
    Ok(())
}

fn save(file: &Path, f: &KeysFile) -> anyhow::Result<()> {
    // Validate what is about to be written, as the server will.
    let text = serde_yaml::to_string(f)?;
    KeysFile::parse(&text, &file.display().to_string())?;
    f.save(file)?;
    Ok(())
}
