//! Files that hold a secret (an admin token, a stream credential): readable by their
//! owner only, written whole or not at all.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Writes a secret to a file readable by its owner only (0600), creating the folder
/// (0700) if missing.
pub fn write_secret_file(path: &Path, secret: &str) -> anyhow::Result<()> {
    let staged = StagedSecret::write(path, secret)?;
    staged.publish()
}

/// Creates `dir` and any missing parents, readable by their owner only (0700). An empty
/// path (the current folder) is left alone.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A secret written next to its final path, not yet under it: [`StagedSecret::publish`]
/// renames it into place; dropping it unpublished removes it. Lets a caller prove that a
/// secret can be written before committing anything that depends on it.
#[derive(Debug)]
pub struct StagedSecret {
    staged: PathBuf,
    path: PathBuf,
    published: bool,
}

impl StagedSecret {
    /// Writes and syncs `secret` (and a newline) to a hidden file in `path`'s folder.
    pub fn write(path: &Path, secret: &str) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            create_private_dir(dir)
                .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        }
        let name = path
            .file_name()
            .with_context(|| format!("{} names no file", path.display()))?;
        let staged = path.with_file_name(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let this = Self {
            staged,
            path: path.to_owned(),
            published: false,
        };
        // A file of this name was left by a process of the same id that died: ours to
        // replace. `create_new` then makes sure nobody else's file is written through.
        let _ = std::fs::remove_file(&this.staged);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&this.staged)
            .with_context(|| format!("cannot write {}", path.display()))?;
        // On an error `this` is dropped, which removes the partial file.
        writeln!(file, "{secret}")
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(this)
    }

    /// Moves the secret to its final path (replacing a file there).
    pub fn publish(mut self) -> anyhow::Result<()> {
        std::fs::rename(&self.staged, &self.path).with_context(|| {
            format!(
                "cannot move {} to {} (the secret is in the first file: move it yourself)",
                self.staged.display(),
                self.path.display()
            )
        })?;
        self.published = true;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The rename is durable once the folder is synced.
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for StagedSecret {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.staged);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_published_secret_is_private_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/admin.token");
        write_secret_file(&path, "s3cret").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "s3cret\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let folder = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(folder.permissions().mode() & 0o777, 0o700);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_secret_dropped_before_it_is_published_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        drop(StagedSecret::write(&path, "s3cret").unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_path_under_a_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notadir"), "").unwrap();
        let path = dir.path().join("notadir/admin.token");
        let err = StagedSecret::write(&path, "s3cret").unwrap_err();
        assert!(format!("{err:#}").contains("notadir"), "{err:#}");
    }
}
