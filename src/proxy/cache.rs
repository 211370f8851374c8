//! The on-disk cache of fetched resources: content-addressed (`objects/<sha256 of the
//! body>`), with an index from the kind and URL to the object and its type
//! (`index/<sha256 of kind:url>`). Entries expire after a time to live; when the objects
//! outgrow the size cap the oldest go first.
//!
//! The directory is private (issue 14): by default `$CACHE_DIRECTORY` (systemd's
//! `CacheDirectory=`), else `$STATE_DIRECTORY`, else `~/.cache/mailveil`, never a
//! predictable path under `/tmp`; it must be ours and writable by nobody else. Files are
//! opened without following symlinks, written under fresh names (`O_EXCL`) and renamed
//! into place, and eviction deletes only regular files whose names it wrote itself (64
//! hex digits; its own temporaries): never a symlink, never anything else put there.

use mailveil_core::ProxyKind;
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A cached resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The type it is served as.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// The cache directory.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    max_bytes: u64,
    ttl: Duration,
    used: Mutex<u64>,
}

/// The subdirectory of a shared directory (`$CACHE_DIRECTORY`, `$STATE_DIRECTORY`,
/// `~/.cache/mailveil`) that the proxy cache takes, so that eviction never meets a file
/// of anything else.
const SUBDIR: &str = "proxy-cache";

/// Where the cache goes when none is configured, read from the environment through
/// `env`: `$CACHE_DIRECTORY` (systemd's `CacheDirectory=`; the first of a `:` list),
/// else `$STATE_DIRECTORY`, else `$XDG_CACHE_HOME/mailveil` or `~/.cache/mailveil`.
/// Relative values are ignored (systemd always sets absolute ones). `Err` when none
/// applies: there is no private default, and `/tmp` is not one.
pub fn default_dir(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, String> {
    let absolute = |name: &str| {
        env(name)
            .and_then(|v| v.to_string_lossy().split(':').next().map(PathBuf::from))
            .filter(|p| p.is_absolute())
    };
    if let Some(d) = absolute("CACHE_DIRECTORY").or_else(|| absolute("STATE_DIRECTORY")) {
        return Ok(d.join(SUBDIR));
    }
    let user_cache =
        absolute("XDG_CACHE_HOME").or_else(|| absolute("HOME").map(|h| h.join(".cache")));
    match user_cache {
        Some(c) => Ok(c.join("mailveil").join(SUBDIR)),
        None => Err(
            "no private directory for the proxy cache: set proxy_cache_dir (--cache-dir), \
             or run under systemd with CacheDirectory="
                .into(),
        ),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex(&h.finalize())
}

/// Whether a file name is one the cache writes: 64 lowercase hex digits (an object or
/// index entry), or such a name with the suffix of its temporaries (`.tmp<pid>-<n>`).
fn ours(name: &str) -> bool {
    let (stem, suffix) = name.split_at(name.len().min(64));
    let hex64 = stem.len() == 64 && stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex64
        && (suffix.is_empty()
            || suffix.strip_prefix(".tmp").is_some_and(|t| {
                !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'-')
            }))
}

/// A temporary name beside `path` that no other writer of this process uses.
fn unique_tmp(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_extension(format!("tmp{}-{n}", std::process::id()))
}

/// Opens a file for reading without following a symlink in its last component.
fn open_nofollow(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

fn read_nofollow(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = open_nofollow(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// Writes `bytes` to a fresh file (never an existing one, never through a symlink) and
/// renames it to `path`.
fn write_fresh(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = unique_tmp(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&tmp)?;
    if let Err(e) = f
        .write_all(bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
    {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Creates `dir` (0700) if needed and checks that it is private: a real directory, not
/// a symlink, owned by this user, writable by nobody else.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    match problem(&meta) {
        Some(p) => Err(std::io::Error::other(format!("{} {p}", dir.display()))),
        None => Ok(()),
    }
}

/// What makes a directory unfit to be the cache (or one of its own directories).
fn problem(meta: &std::fs::Metadata) -> Option<&'static str> {
    if !meta.file_type().is_dir() {
        Some("is not a directory (a symlink?)")
    } else if meta.uid() != rustix::process::geteuid().as_raw() {
        Some("is owned by another user")
    } else if meta.mode() & 0o022 != 0 {
        Some("is writable by group or others")
    } else {
        None
    }
}

/// What [`Cache::open`] would find wrong with `dir`, without creating anything (`--check`
/// may run as another user than the service: it must leave no directory of its own):
/// an existing cache directory must pass the same checks and take a file; a missing one
/// must be creatable, its nearest existing ancestor writable.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let named = |e: &dyn std::fmt::Display| format!("cache directory {}: {e}", dir.display());
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => {
            if let Some(p) = problem(&meta) {
                return Err(named(&p));
            }
            tempfile::tempfile_in(dir)
                .map(drop)
                .map_err(|e| named(&format!("not writable: {e}")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut up = dir.parent();
            while let Some(a) = up.filter(|a| !a.exists()) {
                up = a.parent();
            }
            let ancestor = up.unwrap_or(Path::new("/"));
            if !ancestor.is_dir() {
                return Err(named(&format!("{} is not a directory", ancestor.display())));
            }
            tempfile::tempfile_in(ancestor).map(drop).map_err(|e| {
                named(&format!(
                    "cannot be created: {} not writable: {e}",
                    ancestor.display()
                ))
            })
        }
        Err(e) => Err(named(&e)),
    }
}

/// The regular files of `dir` whose names the cache wrote: (modified, length, path).
fn own_files(dir: &Path) -> Vec<(SystemTime, u64, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(ours))
        .filter_map(|e| {
            // symlink_metadata: a symlink is never taken for the file it points at.
            let m = std::fs::symlink_metadata(e.path()).ok()?;
            m.file_type()
                .is_file()
                .then(|| Some((m.modified().ok()?, m.len(), e.path())))
                .flatten()
        })
        .collect()
}

impl Cache {
    /// Opens (creates) the cache in `dir`, which must be private (see `private_dir`).
    pub fn open(dir: &Path, max_bytes: u64, ttl: Duration) -> std::io::Result<Cache> {
        private_dir(dir)?;
        private_dir(&dir.join("objects"))?;
        private_dir(&dir.join("index"))?;
        let used = own_files(&dir.join("objects")).iter().map(|o| o.1).sum();
        Ok(Cache {
            dir: dir.to_path_buf(),
            max_bytes,
            ttl,
            used: Mutex::new(used),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn index_path(&self, kind: ProxyKind, url: &str) -> PathBuf {
        self.dir
            .join("index")
            .join(digest(&[kind.as_str().as_bytes(), b":", url.as_bytes()]))
    }

    /// The cached resource, unless missing or expired.
    pub fn get(&self, kind: ProxyKind, url: &str) -> Option<Entry> {
        let index = self.index_path(kind, url);
        let meta = std::fs::symlink_metadata(&index).ok()?;
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default();
        if age > self.ttl {
            let _ = std::fs::remove_file(&index);
            return None;
        }
        let text = String::from_utf8(read_nofollow(&index).ok()?).ok()?;
        let (object, content_type) = text.split_once('\n')?;
        if !ours(object) || object.contains('.') {
            return None;
        }
        let body = read_nofollow(&self.dir.join("objects").join(object)).ok()?;
        Some(Entry {
            content_type: content_type.trim_end().to_string(),
            body,
        })
    }

    /// Stores a resource; evicts the oldest objects beyond the size cap.
    pub fn put(&self, kind: ProxyKind, url: &str, entry: &Entry) {
        if entry.body.len() as u64 > self.max_bytes {
            return;
        }
        let object = digest(&[&entry.body]);
        let path = self.dir.join("objects").join(&object);
        let write = || -> std::io::Result<bool> {
            // Same bodies arrive at once (one spacer for many URLs): each writer gets its
            // own temporary name, and the rename is atomic.
            let fresh = std::fs::symlink_metadata(&path).is_err();
            if fresh {
                write_fresh(&path, &entry.body)?;
            }
            let index = self.index_path(kind, url);
            write_fresh(
                &index,
                format!("{object}\n{}\n", entry.content_type).as_bytes(),
            )?;
            Ok(fresh)
        };
        match write() {
            Ok(true) => {
                let over = {
                    let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
                    *used += entry.body.len() as u64;
                    *used > self.max_bytes
                };
                if over {
                    self.evict();
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("cache write failed: {e}"),
        }
    }

    /// Removes the oldest objects until the cache is under 90% of its cap, and expired
    /// index entries: only files the cache wrote (see [`ours`]).
    fn evict(&self) {
        let mut objects = own_files(&self.dir.join("objects"));
        objects.sort();
        let mut total: u64 = objects.iter().map(|o| o.1).sum();
        let target = self.max_bytes / 10 * 9;
        for (_, len, path) in objects {
            if total <= target {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
        *self.used.lock().unwrap_or_else(|p| p.into_inner()) = total;
        let now = SystemTime::now();
        for (modified, _, path) in own_files(&self.dir.join("index")) {
            if now.duration_since(modified).is_ok_and(|age| age > self.ttl) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &[u8]) -> Entry {
        Entry {
            content_type: "image/png".into(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn stores_by_content_and_finds_by_url() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path(), 1 << 20, Duration::from_secs(60)).unwrap();
        c.put(ProxyKind::Image, "http://a.example/1.png", &entry(b"same"));
        c.put(ProxyKind::Image, "http://b.example/2.png", &entry(b"same"));
        assert_eq!(
            c.get(ProxyKind::Image, "http://b.example/2.png"),
            Some(entry(b"same"))
        );
        assert_eq!(c.get(ProxyKind::Style, "http://b.example/2.png"), None);
        assert_eq!(
            std::fs::read_dir(dir.path().join("objects"))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn the_size_cap_evicts_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path(), 100, Duration::from_secs(60)).unwrap();
        for i in 0..10u8 {
            c.put(
                ProxyKind::Image,
                &format!("http://a.example/{i}"),
                &entry(&[i; 30]),
            );
        }
        let total: u64 = std::fs::read_dir(dir.path().join("objects"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 100, "{total}");
        assert!(c.get(ProxyKind::Image, "http://a.example/9").is_some());
    }

    #[test]
    fn concurrent_writers_of_the_same_body_all_get_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let c =
            std::sync::Arc::new(Cache::open(dir.path(), 1 << 20, Duration::from_secs(60)).unwrap());
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let c = std::sync::Arc::clone(&c);
                std::thread::spawn(move || {
                    c.put(
                        ProxyKind::Image,
                        &format!("http://a.example/{i}"),
                        &entry(b"spacer"),
                    )
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        for i in 0..16 {
            assert!(
                c.get(ProxyKind::Image, &format!("http://a.example/{i}"))
                    .is_some(),
                "{i}"
            );
        }
    }

    #[test]
    fn entries_expire() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path(), 1 << 20, Duration::ZERO).unwrap();
        c.put(ProxyKind::Image, "http://a.example/1.png", &entry(b"x"));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(c.get(ProxyKind::Image, "http://a.example/1.png"), None);
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    /// Issue 14: the default was `$TMPDIR/mailveil-cache-<pid>`, a name anyone on the
    /// machine could take first.
    #[test]
    fn the_default_directory_is_private_never_under_tmp() {
        let all = [
            ("CACHE_DIRECTORY", "/var/cache/mailveil:/var/cache/other"),
            ("STATE_DIRECTORY", "/var/lib/mailveil"),
            ("HOME", "/home/mv"),
            ("TMPDIR", "/tmp"),
        ];
        assert_eq!(
            default_dir(env(&all)).unwrap(),
            Path::new("/var/cache/mailveil/proxy-cache")
        );
        assert_eq!(
            default_dir(env(&all[1..])).unwrap(),
            Path::new("/var/lib/mailveil/proxy-cache")
        );
        assert_eq!(
            default_dir(env(&all[2..])).unwrap(),
            Path::new("/home/mv/.cache/mailveil/proxy-cache")
        );
        assert_eq!(
            default_dir(env(&[("XDG_CACHE_HOME", "/x/c"), ("HOME", "/home/mv")])).unwrap(),
            Path::new("/x/c/mailveil/proxy-cache")
        );
        assert!(default_dir(env(&all[3..])).is_err());
        assert!(default_dir(env(&[("HOME", "relative")])).is_err());
    }

    #[test]
    fn a_shared_or_symlinked_directory_is_refused_and_a_new_one_is_0700() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("a/b");
        Cache::open(&fresh, 1 << 20, Duration::from_secs(60)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&fresh.join("objects")), 0o700);
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(Cache::open(&shared, 1 << 20, Duration::from_secs(60)).is_err());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        assert!(Cache::open(&link, 1 << 20, Duration::from_secs(60)).is_err());
    }

    #[test]
    fn symlinks_in_the_cache_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(
            &secret,
            "4f1bd5b2c0b1c5d0e9e4b1a6a7f8e9d0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6\nimage/png\n",
        )
        .unwrap();
        let cdir = dir.path().join("cache");
        let c = Cache::open(&cdir, 1 << 20, Duration::from_secs(60)).unwrap();
        let url = "http://a.example/1.png";
        // An index entry that is a symlink to a file outside: not read.
        std::os::unix::fs::symlink(&secret, c.index_path(ProxyKind::Image, url)).unwrap();
        assert_eq!(c.get(ProxyKind::Image, url), None);
        // An object that is a symlink: not served.
        c.put(ProxyKind::Image, "http://b.example/2.png", &entry(b"body"));
        let object = cdir.join("objects").join(digest(&[b"body"]));
        std::fs::remove_file(&object).unwrap();
        std::os::unix::fs::symlink(&secret, &object).unwrap();
        assert_eq!(c.get(ProxyKind::Image, "http://b.example/2.png"), None);
        // Writing over a symlinked index entry replaces the link, not its target.
        c.put(ProxyKind::Image, url, &entry(b"new"));
        assert_eq!(c.get(ProxyKind::Image, url), Some(entry(b"new")));
        assert!(
            std::fs::read_to_string(&secret)
                .unwrap()
                .ends_with("image/png\n")
        );
        assert!(
            std::fs::read_to_string(&secret)
                .unwrap()
                .starts_with("4f1bd5")
        );
    }

    #[test]
    fn eviction_deletes_only_files_the_cache_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("cache");
        let c = Cache::open(&cdir, 100, Duration::from_secs(60)).unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, vec![b'x'; 500]).unwrap();
        let objects = cdir.join("objects");
        let foreign = objects.join("notes.txt");
        std::fs::write(&foreign, vec![b'n'; 500]).unwrap();
        let fake = objects.join("a".repeat(64));
        std::os::unix::fs::symlink(&outside, &fake).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for p in [&foreign, &outside] {
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        for i in 0..10u8 {
            c.put(
                ProxyKind::Image,
                &format!("http://a.example/{i}"),
                &entry(&[i; 30]),
            );
        }
        assert!(
            foreign.exists(),
            "a file the cache did not write was deleted"
        );
        assert!(
            std::fs::symlink_metadata(&fake).is_ok(),
            "a symlink was deleted"
        );
        assert_eq!(std::fs::read(&outside).unwrap().len(), 500);
        assert!(c.get(ProxyKind::Image, "http://a.example/9").is_some());
        assert!(ours(&"0".repeat(64)) && ours(&format!("{}.tmp12-3", "f".repeat(64))));
        assert!(
            !ours("notes.txt")
                && !ours(&"A".repeat(64))
                && !ours(&format!("{}.txt", "0".repeat(64)))
        );
    }
}
