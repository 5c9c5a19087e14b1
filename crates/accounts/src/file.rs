//! The embedded backend: files in the data directory.
//!
//! - `accounts.json`: users and tokens. Written by the server and by the command line,
//!   possibly at once: every change reads, edits and replaces the whole file (write,
//!   fsync, rename) while holding an exclusive lock on `accounts.lock`. Readers need no
//!   lock (a rename is atomic); they keep the parsed file and read it again when its
//!   inode, length or modification time changed.
//! - `sessions.json`: login sessions, the same way (only servers write it).
//! - `audit.jsonl`: one JSON object per line, appended and fsynced.
//! - Failed logins are counted in memory: they start afresh when the server restarts.
//!
//! Every file is created readable by its owner only.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{AccountsError, AuditEntry, Session, Token, User};

const OWNER_ONLY: u32 = 0o600;

pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    accounts: JsonFile<AccountsDoc>,
    sessions: JsonFile<SessionsDoc>,
    audit: PathBuf,
    audit_lock: Mutex<()>,
    failures: Mutex<HashMap<String, (Instant, Duration, u32)>>,
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct AccountsDoc {
    #[serde(default)]
    users: BTreeMap<String, User>,
    /// By digest.
    #[serde(default)]
    tokens: BTreeMap<String, Token>,
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct SessionsDoc {
    /// By digest of the session id.
    #[serde(default)]
    sessions: BTreeMap<String, KeptSession>,
}

#[derive(Clone, Serialize, Deserialize)]
struct KeptSession {
    session: Session,
    expires: DateTime<Utc>,
}

impl FileStore {
    pub async fn open(dir: PathBuf) -> Result<FileStore, AccountsError> {
        let inner = blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            let inner = Inner {
                accounts: JsonFile::new(dir.join("accounts.json"), dir.join("accounts.lock")),
                sessions: JsonFile::new(dir.join("sessions.json"), dir.join("sessions.lock")),
                audit: dir.join("audit.jsonl"),
                audit_lock: Mutex::new(()),
                failures: Mutex::new(HashMap::new()),
            };
            // Fails now, not at the first login, when a file is unreadable.
            inner.accounts.read()?;
            inner.sessions.read()?;
            Ok(inner)
        })
        .await?;
        Ok(FileStore {
            inner: Arc::new(inner),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, AccountsError> + Send + 'static,
    ) -> Result<T, AccountsError> {
        let inner = self.inner.clone();
        blocking(move || f(&inner)).await
    }

    pub async fn users(&self) -> Result<Vec<User>, AccountsError> {
        self.with(|i| Ok(i.accounts.read()?.users.values().cloned().collect()))
            .await
    }

    pub async fn user(&self, name: &str) -> Result<Option<User>, AccountsError> {
        let name = name.to_string();
        self.with(move |i| Ok(i.accounts.read()?.users.get(&name).cloned()))
            .await
    }

    pub async fn put_user(&self, user: User, replace: bool) -> Result<(), AccountsError> {
        self.with(move |i| {
            i.accounts.update(|doc| {
                match (doc.users.contains_key(&user.name), replace) {
                    (true, false) => {
                        return Err(AccountsError::Exists(format!("user {:?}", user.name)));
                    }
                    (false, true) => {
                        return Err(AccountsError::NotFound(format!("user {:?}", user.name)));
                    }
                    _ => {}
                }
                doc.users.insert(user.name.clone(), user);
                Ok(())
            })
        })
        .await
    }

    pub async fn remove_user(&self, name: &str) -> Result<bool, AccountsError> {
        let name = name.to_string();
        self.with(move |i| {
            i.accounts
                .update(|doc| Ok(doc.users.remove(&name).is_some()))
        })
        .await
    }

    pub async fn tokens(&self) -> Result<Vec<Token>, AccountsError> {
        self.with(|i| Ok(i.accounts.read()?.tokens.values().cloned().collect()))
            .await
    }

    pub async fn token(&self, digest: &str) -> Result<Option<Token>, AccountsError> {
        let digest = digest.to_string();
        self.with(move |i| Ok(i.accounts.read()?.tokens.get(&digest).cloned()))
            .await
    }

    pub async fn add_token(&self, token: Token) -> Result<(), AccountsError> {
        self.with(move |i| {
            i.accounts.update(|doc| {
                doc.tokens.insert(token.digest.clone(), token);
                Ok(())
            })
        })
        .await
    }

    pub async fn remove_token(&self, id: &str) -> Result<bool, AccountsError> {
        let id = id.to_string();
        self.with(move |i| {
            i.accounts.update(|doc| {
                let before = doc.tokens.len();
                doc.tokens.retain(|_, t| t.id != id);
                Ok(doc.tokens.len() != before)
            })
        })
        .await
    }

    pub async fn session(&self, digest: &str) -> Result<Option<Session>, AccountsError> {
        let digest = digest.to_string();
        self.with(move |i| {
            let doc = i.sessions.read()?;
            Ok(doc
                .sessions
                .get(&digest)
                .filter(|kept| kept.expires > Utc::now())
                .map(|kept| kept.session.clone()))
        })
        .await
    }

    pub async fn put_session(
        &self,
        digest: &str,
        session: &Session,
        ttl: Duration,
    ) -> Result<(), AccountsError> {
        let (digest, session) = (digest.to_string(), session.clone());
        let expires = Utc::now()
            + chrono::Duration::from_std(ttl)
                .map_err(|_| AccountsError::Invalid("session lifetime out of range".into()))?;
        self.with(move |i| {
            i.sessions.update(|doc| {
                let now = Utc::now();
                doc.sessions.retain(|_, kept| kept.expires > now);
                doc.sessions
                    .insert(digest, KeptSession { session, expires });
                Ok(())
            })
        })
        .await
    }

    pub async fn end_session(&self, digest: &str) -> Result<(), AccountsError> {
        let digest = digest.to_string();
        self.with(move |i| {
            i.sessions.update(|doc| {
                doc.sessions.remove(&digest);
                Ok(())
            })
        })
        .await
    }

    pub async fn add_failure(&self, key: &str, window: Duration) -> Result<u32, AccountsError> {
        let mut failures = lock(&self.inner.failures);
        let now = Instant::now();
        failures.retain(|_, (start, window, _)| now.duration_since(*start) < *window);
        let entry = failures.entry(key.to_string()).or_insert((now, window, 0));
        entry.2 += 1;
        Ok(entry.2)
    }

    pub async fn failures(&self, key: &str) -> Result<u32, AccountsError> {
        let failures = lock(&self.inner.failures);
        Ok(failures
            .get(key)
            .filter(|(start, window, _)| start.elapsed() < *window)
            .map_or(0, |(_, _, n)| *n))
    }

    pub async fn clear_failures(&self, key: &str) -> Result<(), AccountsError> {
        lock(&self.inner.failures).remove(key);
        Ok(())
    }

    pub async fn record(&self, entry: &AuditEntry) -> Result<(), AccountsError> {
        let mut line = serde_json::to_vec(entry)
            .map_err(|e| AccountsError::Invalid(format!("audit entry: {e}")))?;
        line.push(b'\n');
        self.with(move |i| {
            let _one_writer = lock(&i.audit_lock);
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(OWNER_ONLY)
                .open(&i.audit)
                .map_err(|e| io(&i.audit, e))?;
            file.write_all(&line).map_err(|e| io(&i.audit, e))?;
            file.sync_data().map_err(|e| io(&i.audit, e))
        })
        .await
    }

    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, AccountsError> {
        self.with(move |i| {
            let lines = last_lines(&i.audit, limit)?;
            lines
                .iter()
                .rev()
                .map(|line| {
                    serde_json::from_slice(line)
                        .map_err(|e| AccountsError::Corrupt(format!("audit.jsonl: {e}")))
                })
                .collect()
        })
        .await
    }
}

/// A JSON document in a file, replaced whole under a lock and re-read when it changed.
struct JsonFile<T> {
    path: PathBuf,
    lock_path: PathBuf,
    cached: Mutex<Option<(Signature, Arc<T>)>>,
}

/// How long after its last change a file is trusted by its signature alone.
const SETTLED_NS: i128 = 1_000_000_000;

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// What tells a replaced file from the one read before.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Signature {
    inode: u64,
    len: u64,
    modified_ns: i128,
}

impl<T: Default + Clone + Serialize + DeserializeOwned> JsonFile<T> {
    fn new(path: PathBuf, lock_path: PathBuf) -> JsonFile<T> {
        JsonFile {
            path,
            lock_path,
            cached: Mutex::new(None),
        }
    }

    fn signature(&self) -> Result<Option<Signature>, AccountsError> {
        match std::fs::metadata(&self.path) {
            Ok(m) => Ok(Some(Signature {
                inode: m.ino(),
                len: m.len(),
                modified_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&self.path, e)),
        }
    }

    /// The document as it is on disk now (empty when there is no file yet).
    fn read(&self) -> Result<Arc<T>, AccountsError> {
        let Some(signature) = self.signature()? else {
            return Ok(Arc::new(T::default()));
        };
        let mut cached = lock(&self.cached);
        // A file changed within the last second may have been replaced again within one
        // tick of a coarse file clock, by a file of the same length on a reused inode:
        // only an older one is trusted by its signature.
        let settled = signature.modified_ns < now_ns() - SETTLED_NS;
        if let Some((seen, doc)) = cached.as_ref()
            && *seen == signature
            && settled
        {
            return Ok(doc.clone());
        }
        let doc = Arc::new(self.load()?);
        // The signature read before the bytes: a file replaced in between is read again
        // next time, never kept under the newer signature.
        *cached = Some((signature, doc.clone()));
        Ok(doc)
    }

    /// The document as the file holds it now, without the cache.
    fn load(&self) -> Result<T, AccountsError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(T::default()),
            Err(e) => return Err(io(&self.path, e)),
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| AccountsError::Corrupt(format!("{}: {e}", self.path.display())))
    }

    /// Edits the document under the lock and replaces the file when `edit` succeeds.
    fn update<R>(
        &self,
        edit: impl FnOnce(&mut T) -> Result<R, AccountsError>,
    ) -> Result<R, AccountsError> {
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(OWNER_ONLY)
            .open(&self.lock_path)
            .map_err(|e| io(&self.lock_path, e))?;
        lock_file.lock().map_err(|e| io(&self.lock_path, e))?;
        // From the file itself, never the cache: an edit on a stale copy would undo what
        // another process wrote.
        let mut doc = self.load()?;
        let result = edit(&mut doc)?;
        let bytes = serde_json::to_vec_pretty(&doc)
            .map_err(|e| AccountsError::Invalid(format!("{}: {e}", self.path.display())))?;
        replace_file(&self.path, &bytes)?;
        *lock(&self.cached) = None;
        drop(lock_file);
        Ok(result)
    }
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, whole.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), AccountsError> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(OWNER_ONLY)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| io(&tmp, e))?;
    file.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(dir, e))?;
    }
    Ok(())
}

/// The last `limit` non-empty lines of a file, oldest first, read from its end.
fn last_lines(path: &Path, limit: usize) -> Result<Vec<Vec<u8>>, AccountsError> {
    const BLOCK: u64 = 64 * 1024;
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path, e)),
    };
    let mut end = file.seek(SeekFrom::End(0)).map_err(|e| io(path, e))?;
    // Bytes from some offset to the end of the file.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let complete = tail
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        // The first line of `tail` may be cut; more than `limit` lines means it does not matter.
        if complete > limit || end == 0 {
            break;
        }
        let start = end.saturating_sub(BLOCK);
        let mut block = vec![0; (end - start) as usize];
        file.seek(SeekFrom::Start(start)).map_err(|e| io(path, e))?;
        file.read_exact(&mut block).map_err(|e| io(path, e))?;
        block.extend_from_slice(&tail);
        tail = block;
        end = start;
    }
    let lines: Vec<Vec<u8>> = tail
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    Ok(lines[lines.len().saturating_sub(limit)..].to_vec())
}

fn io(path: &Path, e: std::io::Error) -> AccountsError {
    AccountsError::Unavailable(format!("{}: {e}", path.display()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves nothing half-done in the data.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AccountsError> + Send + 'static,
) -> Result<T, AccountsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AccountsError::Unavailable(format!("accounts task: {e}")))?
}
