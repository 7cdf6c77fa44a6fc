//! Crash-safe file replacement: write a temp file in the same directory, fsync it, rename it over the
//! target, fsync the directory. A reader (or a restart after a crash) sees the old file or the new one,
//! never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Replaces `path` with what `write` produces, atomically.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        write(&mut f)?;
        f.flush()?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Copies `path` to `<path>.bak` durably (the previous version an operator can go back to). A missing
/// `path` is not an error: there is nothing to keep.
pub fn keep_backup(path: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut bak = path.as_os_str().to_owned();
    bak.push(".bak");
    let bak = PathBuf::from(bak);
    match std::fs::read(path) {
        Ok(bytes) => {
            write_atomically(&bak, |f| f.write_all(&bytes))?;
            Ok(Some(bak))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    // Directory fsync makes the rename itself durable; not all platforms allow opening a directory.
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_backs_up() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("routes.yaml");
        write_atomically(&p, |f| f.write_all(b"one")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        let bak = keep_backup(&p).unwrap().unwrap();
        write_atomically(&p, |f| f.write_all(b"two")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read(bak).unwrap(), b"one");
        // No temp files are left behind.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn failed_write_leaves_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        write_atomically(&p, |f| f.write_all(b"good")).unwrap();
        let r = write_atomically(&p, |_| Err(std::io::Error::other("boom")));
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"good");
    }
}
