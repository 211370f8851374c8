//! The spool of mails the milter cannot clean in memory (over `--max-message-bytes`, or
//! larger than its memory budget can ever hold): such a mail is written to a file as it
//! arrives, and at end of message it goes back to the MTA wrapped (see
//! [`mailveil_core::TooLarge`]), read from the file a chunk at a time. Memory stays at a
//! few chunks per connection, whatever the size.
//!
//! The files are private: a new directory of a random name, mode 0700, made with
//! `mkdir` (which never follows a symlink nor reuses what is there) in
//! `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else `$RUNTIME_DIRECTORY`, else the
//! system temp directory; in it each mail's file is opened `O_TMPFILE` (no name at all;
//! where the file system cannot, a random name unlinked at once), so nothing else can
//! open it and it is gone when closed, crash included. The files of all connections
//! together are bounded by `--max-spool-bytes`: past it a mail gets a temporary failure.

use std::io::SeekFrom;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The directory and the disk cap all connections share.
#[derive(Debug)]
pub struct SpoolDir {
    dir: tempfile::TempDir,
    cap: Arc<DiskCap>,
}

impl SpoolDir {
    /// A private directory in the first of `$STATE_DIRECTORY`, `$RUNTIME_DIRECTORY`
    /// (the first of a `:` list, absolute only) and the system temp directory.
    pub fn create(max_bytes: u64) -> Result<SpoolDir, String> {
        SpoolDir::create_in(&base_dir(|name| std::env::var_os(name)), max_bytes)
    }

    /// A private directory in `base`.
    pub fn create_in(base: &Path, max_bytes: u64) -> Result<SpoolDir, String> {
        let dir = tempfile::Builder::new()
            .prefix("mailveil-spool-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(base)
            .map_err(|e| format!("cannot make the spool directory in {}: {e}", base.display()))?;
        Ok(SpoolDir {
            dir,
            cap: Arc::new(DiskCap {
                limit: max_bytes,
                used: AtomicU64::new(0),
            }),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The bytes spooled now, all connections together.
    #[cfg(test)]
    pub fn in_use(&self) -> u64 {
        self.cap.used.load(Ordering::Acquire)
    }

    /// A new spool file. Never fails here: an error is kept and answered at end of
    /// message (a temporary failure).
    pub fn file(&self) -> Spool {
        let (file, error) = match tempfile::tempfile_in(self.dir.path()) {
            Ok(f) => (Some(tokio::fs::File::from_std(f)), None),
            Err(e) => (None, Some(format!("cannot create a spool file: {e}"))),
        };
        Spool {
            file,
            len: 0,
            cap: Arc::clone(&self.cap),
            charged: 0,
            error,
        }
    }
}

/// Where the spool directory goes (see [`SpoolDir::create`]), from the environment
/// through `env`.
pub fn base_dir(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let absolute = |name: &str| {
        env(name)
            .and_then(|v| v.to_string_lossy().split(':').next().map(PathBuf::from))
            .filter(|p| p.is_absolute())
    };
    absolute("STATE_DIRECTORY")
        .or_else(|| absolute("RUNTIME_DIRECTORY"))
        .unwrap_or_else(std::env::temp_dir)
}

/// The bytes all spool files may hold together.
#[derive(Debug)]
struct DiskCap {
    limit: u64,
    used: AtomicU64,
}

impl DiskCap {
    fn take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&u| u <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// One mail's spool file; its share of the cap is given back when it is dropped (and
/// the file is gone with it).
#[derive(Debug)]
pub struct Spool {
    file: Option<tokio::fs::File>,
    len: u64,
    cap: Arc<DiskCap>,
    charged: u64,
    error: Option<String>,
}

impl Spool {
    /// Appends `bytes`. After an error (the cap, the disk) nothing more is written and
    /// the file is closed; the error is kept for the end of the message.
    pub async fn append(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let n = bytes.len() as u64;
        if !self.cap.take(n) {
            self.fail("--max-spool-bytes reached".into());
            return;
        }
        self.charged += n;
        match file.write_all(bytes).await {
            Ok(()) => self.len += n,
            Err(e) => self.fail(format!("cannot write the spool file: {e}")),
        }
    }

    fn fail(&mut self, why: String) {
        self.file = None;
        self.error.get_or_insert(why);
    }

    /// Why the mail is not whole in the spool, if it is not.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The bytes written.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The file, where the last read or write left it.
    pub fn file(&mut self) -> std::io::Result<&mut tokio::fs::File> {
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the spool file is closed"))
    }

    /// The file, written out and read from its start.
    pub async fn rewind(&mut self) -> std::io::Result<&mut tokio::fs::File> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the spool file is closed"))?;
        file.flush().await?;
        file.seek(SeekFrom::Start(0)).await?;
        Ok(file)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.cap.give_back(self.charged);
    }
}

/// Reads into `buf` until it is full or the file ends; the bytes read.
pub async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match file.read(&mut buf[at..]).await? {
            0 => break,
            n => at += n,
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_base_directory_is_systemds_or_the_temp_directory() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert_eq!(
            base_dir(env(&[
                ("STATE_DIRECTORY", "/var/lib/mailveil:/var/lib/other"),
                ("RUNTIME_DIRECTORY", "/run/mailveil"),
            ])),
            Path::new("/var/lib/mailveil")
        );
        assert_eq!(
            base_dir(env(&[
                ("STATE_DIRECTORY", "relative"),
                ("RUNTIME_DIRECTORY", "/run/mailveil")
            ])),
            Path::new("/run/mailveil")
        );
        assert_eq!(base_dir(env(&[])), std::env::temp_dir());
    }

    #[tokio::test]
    async fn files_are_private_nameless_and_capped() {
        let base = tempfile::tempdir().unwrap();
        let dir = SpoolDir::create_in(base.path(), 100).unwrap();
        let meta = std::fs::symlink_metadata(dir.path()).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o777, 0o700);
        let mut a = dir.file();
        a.append(&[b'a'; 60]).await;
        assert_eq!(a.error(), None);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no names"
        );
        let mut b = dir.file();
        b.append(&[b'b'; 60]).await;
        assert!(b.error().unwrap().contains("--max-spool-bytes"));
        assert_eq!(dir.in_use(), 60);
        let mut back = vec![0u8; 100];
        let file = a.rewind().await.unwrap();
        assert_eq!(read_full(file, &mut back).await.unwrap(), 60);
        drop(a);
        drop(b);
        assert_eq!(dir.in_use(), 0, "the cap comes back");
        // another directory of the same prefix, or a symlink where ours would go,
        // never becomes ours: each is a new mkdir of a random name
        let other = SpoolDir::create_in(base.path(), 100).unwrap();
        assert_ne!(other.path(), dir.path());
    }
}
