//! The on-disk cache of fetched resources: content-addressed (`objects/<sha256 of the
//! body>`), with an index from the kind and URL to the object and its type
//! (`index/<sha256 of kind:url>`). Entries expire after a time to live; when the objects
//! outgrow the size cap the oldest go first.

use mailveil_core::ProxyKind;
use sha2::{Digest, Sha256};
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

/// A temporary name beside `path` that no other writer of this process uses.
fn unique_tmp(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_extension(format!("tmp{}-{n}", std::process::id()))
}

impl Cache {
    /// Opens (creates) the cache in `dir`.
    pub fn open(dir: &Path, max_bytes: u64, ttl: Duration) -> std::io::Result<Cache> {
        std::fs::create_dir_all(dir.join("objects"))?;
        std::fs::create_dir_all(dir.join("index"))?;
        let used = std::fs::read_dir(dir.join("objects"))?
            .filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        Ok(Cache {
            dir: dir.to_path_buf(),
            max_bytes,
            ttl,
            used: Mutex::new(used),
        })
    }

    fn index_path(&self, kind: ProxyKind, url: &str) -> PathBuf {
        self.dir
            .join("index")
            .join(digest(&[kind.as_str().as_bytes(), b":", url.as_bytes()]))
    }

    /// The cached resource, unless missing or expired.
    pub fn get(&self, kind: ProxyKind, url: &str) -> Option<Entry> {
        let index = self.index_path(kind, url);
        let meta = std::fs::metadata(&index).ok()?;
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default();
        if age > self.ttl {
            let _ = std::fs::remove_file(&index);
            return None;
        }
        let text = std::fs::read_to_string(&index).ok()?;
        let (object, content_type) = text.split_once('\n')?;
        if object.len() != 64 || !object.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let body = std::fs::read(self.dir.join("objects").join(object)).ok()?;
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
            let fresh = !path.exists();
            if fresh {
                let tmp = unique_tmp(&path);
                std::fs::write(&tmp, &entry.body)?;
                std::fs::rename(&tmp, &path)?;
            }
            let index = self.index_path(kind, url);
            let tmp = unique_tmp(&index);
            std::fs::write(&tmp, format!("{object}\n{}\n", entry.content_type))?;
            std::fs::rename(&tmp, &index)?;
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
    /// index entries.
    fn evict(&self) {
        let mut objects: Vec<(SystemTime, u64, PathBuf)> =
            match std::fs::read_dir(self.dir.join("objects")) {
                Ok(rd) => rd
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let m = e.metadata().ok()?;
                        Some((m.modified().ok()?, m.len(), e.path()))
                    })
                    .collect(),
                Err(_) => return,
            };
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
        if let Ok(rd) = std::fs::read_dir(self.dir.join("index")) {
            for e in rd.filter_map(Result::ok) {
                let expired = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok())
                    .is_some_and(|age| age > self.ttl);
                if expired {
                    let _ = std::fs::remove_file(e.path());
                }
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
}
