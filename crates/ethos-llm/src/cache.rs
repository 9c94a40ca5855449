//! SQLite request cache: reruns make zero model calls and a crashed run resumes exactly.
//!
//! [`RequestCache`] maps a [`CacheKey`] (SHA-256 of backend identity, request kind and the canonical JSON of the
//! request) to the JSON of a successful response. [`CachedModel`] wraps any [`ChatModel`]: it answers from the
//! cache when it can, forwards only the misses (a batch's misses in one `chat_batch` call, so batching backends
//! still batch), stores every success and never stores an error.
//!
//! The same request always gets the same answer, so callers that want fresh samples vary `sampling.seed`.
//!
//! The file is in WAL mode with a busy timeout, every write is a transaction, so many tasks, several processes and
//! a process killed mid-run all leave a consistent cache: an entry is either fully there or absent.
//!
//! ```
//! # async fn demo(model: std::sync::Arc<dyn ethos_llm::ChatModel>) -> Result<(), ethos_llm::LlmError> {
//! use ethos_llm::cache::{CachedModel, RequestCache};
//!
//! let cache = RequestCache::open("requests.sqlite")?;
//! let cached = CachedModel::new(model, cache);
//! // ... use `cached` as any ChatModel ...
//! let stats = cached.stats();
//! eprintln!("model calls: {}, cache hits: {}", stats.misses, stats.hits);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::spec::ModelSpec;
use crate::types::{ChatModel, ChatRequest, ChatResponse, ContinuationLogprobs, ContinuationRequest, LlmError};

/// Version of the key derivation and stored JSON; part of every key, so a change never reads stale entries.
pub const CACHE_FORMAT_VERSION: u32 = 1;

/// How long a connection waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// What a cached request asked for; part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestKind {
    /// [`ChatModel::chat`] (and each request of [`ChatModel::chat_batch`]).
    Chat,
    /// [`ChatModel::continuation_logprobs`].
    Continuation,
}

impl RequestKind {
    /// The name stored in the cache and hashed into keys.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Chat => "chat",
            RequestKind::Continuation => "continuation",
        }
    }
}

/// SHA-256 of (format version, backend identity, request kind, canonical JSON of the request).
///
/// Canonical JSON has object keys sorted and no whitespace, so the key does not depend on field order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// Derives the key of `request` sent to the backend named `identity`.
    pub fn new<T: Serialize + ?Sized>(identity: &str, kind: RequestKind, request: &T) -> Result<CacheKey, LlmError> {
        let value = serde_json::to_value(request).map_err(|err| LlmError::Cache(format!("encode request: {err}")))?;
        let mut canonical = String::new();
        write_canonical_json(&value, &mut canonical);
        let mut hasher = Sha256::new();
        // Length prefixes keep the parts from running into each other.
        for part in [format!("ethos-request-cache/v{CACHE_FORMAT_VERSION}"), identity.to_string()] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        for part in [kind.as_str(), canonical.as_str()] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        Ok(CacheKey(hasher.finalize().into()))
    }

    /// Lower-case hex, as stored in the cache file.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.to_hex())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A SQLite file of responses by [`CacheKey`]. Cloning shares the connection.
///
/// Methods block on SQLite (each takes well under a millisecond unless another process holds the write lock);
/// [`CachedModel`] calls them through `spawn_blocking`.
#[derive(Clone)]
pub struct RequestCache {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl RequestCache {
    /// Opens or creates the cache file (and its parent directory).
    pub fn open(path: impl AsRef<Path>) -> Result<RequestCache, LlmError> {
        let path = path.as_ref().to_path_buf();
        let fail = |what: &str, err: &dyn fmt::Display| LlmError::Cache(format!("{}: {what}: {err}", path.display()));
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| fail("create directory", &err))?;
        }
        let mut connection = Connection::open(&path).map_err(|err| fail("open", &err))?;
        // The busy timeout goes first: switching to WAL and creating tables can meet another process doing the same.
        connection.busy_timeout(BUSY_TIMEOUT).map_err(|err| fail("set busy timeout", &err))?;
        let journal_mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|err| fail("enable WAL", &err))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(fail("enable WAL", &format!("journal mode stayed `{journal_mode}`")));
        }
        // In WAL mode NORMAL loses no committed transaction when a process dies, only on power loss.
        connection.pragma_update(None, "synchronous", "NORMAL").map_err(|err| fail("set synchronous", &err))?;
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|err| fail("create tables", &err))?;
        transaction
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS cache_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS responses (
                     key TEXT PRIMARY KEY,
                     kind TEXT NOT NULL,
                     response TEXT NOT NULL,
                     created_unix_s INTEGER NOT NULL
                 ) WITHOUT ROWID;",
            )
            .map_err(|err| fail("create tables", &err))?;
        transaction
            .execute(
                "INSERT OR IGNORE INTO cache_meta (name, value) VALUES ('format_version', ?1)",
                params![CACHE_FORMAT_VERSION.to_string()],
            )
            .map_err(|err| fail("write format version", &err))?;
        let format_version: String = transaction
            .query_row("SELECT value FROM cache_meta WHERE name = 'format_version'", [], |row| row.get(0))
            .map_err(|err| fail("read format version", &err))?;
        transaction.commit().map_err(|err| fail("create tables", &err))?;
        if format_version != CACHE_FORMAT_VERSION.to_string() {
            return Err(fail(
                "format version",
                &format!(
                    "file has version {format_version}, this build uses {CACHE_FORMAT_VERSION}; use another cache path"
                ),
            ));
        }
        Ok(RequestCache { connection: Arc::new(Mutex::new(connection)), path })
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored response of `key`, if any. An entry that no longer decodes as `T` counts as absent.
    pub fn lookup<T: DeserializeOwned>(&self, key: &CacheKey) -> Result<Option<T>, LlmError> {
        let raw = self.lookup_raw(std::slice::from_ref(key))?;
        Ok(raw.into_iter().next().flatten().and_then(|json| decode_entry(key, &json)))
    }

    /// Stores `response` under `key`, replacing an older entry.
    pub fn store<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        kind: RequestKind,
        response: &T,
    ) -> Result<(), LlmError> {
        let json = serde_json::to_string(response).map_err(|err| LlmError::Cache(format!("encode response: {err}")))?;
        self.store_raw(kind, &[(*key, json)])
    }

    /// Number of stored responses.
    pub fn n_entries(&self) -> Result<u64, LlmError> {
        let connection = self.lock();
        let n_entries: i64 = connection
            .query_row("SELECT COUNT(*) FROM responses", [], |row| row.get(0))
            .map_err(|err| self.error("count entries", &err))?;
        Ok(n_entries.max(0) as u64)
    }

    /// The stored JSON of each key, in one read transaction.
    fn lookup_raw(&self, keys: &[CacheKey]) -> Result<Vec<Option<String>>, LlmError> {
        let mut connection = self.lock();
        let transaction = connection.transaction().map_err(|err| self.error("read", &err))?;
        let mut jsons = Vec::with_capacity(keys.len());
        {
            let mut statement = transaction
                .prepare_cached("SELECT response FROM responses WHERE key = ?1")
                .map_err(|err| self.error("read", &err))?;
            for key in keys {
                let json = statement
                    .query_row(params![key.to_hex()], |row| row.get::<_, String>(0))
                    .optional()
                    .map_err(|err| self.error("read", &err))?;
                jsons.push(json);
            }
        }
        transaction.commit().map_err(|err| self.error("read", &err))?;
        Ok(jsons)
    }

    /// Stores all entries in one transaction: a process killed meanwhile leaves none of them.
    fn store_raw(&self, kind: RequestKind, entries: &[(CacheKey, String)]) -> Result<(), LlmError> {
        if entries.is_empty() {
            return Ok(());
        }
        let created_unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64);
        let mut connection = self.lock();
        // IMMEDIATE takes the write lock up front, so the busy timeout applies instead of a deadlock error.
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|err| self.error("write", &err))?;
        {
            let mut statement = transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO responses (key, kind, response, created_unix_s) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(|err| self.error("write", &err))?;
            for (key, json) in entries {
                statement
                    .execute(params![key.to_hex(), kind.as_str(), json, created_unix_s])
                    .map_err(|err| self.error("write", &err))?;
            }
        }
        transaction.commit().map_err(|err| self.error("write", &err))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open (dropping one rolls it back).
        self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn error(&self, what: &str, err: &rusqlite::Error) -> LlmError {
        LlmError::Cache(format!("{}: {what}: {err}", self.path.display()))
    }
}

impl fmt::Debug for RequestCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestCache").field("path", &self.path).finish()
    }
}

/// Hits and misses of a [`CachedModel`]; every miss is one request forwarded to the inner model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Requests answered from the cache (or by an identical request earlier in the same batch).
    pub hits: u64,
    /// Requests forwarded to the inner model, whether or not they succeeded.
    pub misses: u64,
}

/// A [`ChatModel`] that answers from a [`RequestCache`] before calling the inner model.
pub struct CachedModel<M: ?Sized = dyn ChatModel> {
    inner: Arc<M>,
    cache: RequestCache,
    identity: String,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<M: ChatModel + ?Sized> CachedModel<M> {
    /// Wraps `inner`; its identity is read once here and keys every entry.
    pub fn new(inner: Arc<M>, cache: RequestCache) -> CachedModel<M> {
        let identity = inner.identity();
        CachedModel { inner, cache, identity, hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats { hits: self.hits.load(Ordering::Relaxed), misses: self.misses.load(Ordering::Relaxed) }
    }

    /// The wrapped model.
    pub fn inner(&self) -> &Arc<M> {
        &self.inner
    }

    /// The cache.
    pub fn cache(&self) -> &RequestCache {
        &self.cache
    }

    async fn lookup_many<T: DeserializeOwned>(&self, keys: Vec<CacheKey>) -> Result<Vec<Option<T>>, LlmError> {
        let cache = self.cache.clone();
        let lookup_keys = keys.clone();
        let jsons = run_blocking(move || cache.lookup_raw(&lookup_keys)).await??;
        Ok(keys.iter().zip(jsons).map(|(key, json)| json.and_then(|json| decode_entry(key, &json))).collect())
    }

    async fn store_many<T: Serialize>(&self, kind: RequestKind, entries: &[(CacheKey, &T)]) -> Result<(), LlmError> {
        let mut encoded = Vec::with_capacity(entries.len());
        for (key, response) in entries {
            let json =
                serde_json::to_string(response).map_err(|err| LlmError::Cache(format!("encode response: {err}")))?;
            encoded.push((*key, json));
        }
        let cache = self.cache.clone();
        run_blocking(move || cache.store_raw(kind, &encoded)).await?
    }

    async fn cached_call<Req, Resp, Call>(&self, kind: RequestKind, request: &Req, call: Call) -> Result<Resp, LlmError>
    where
        Req: Serialize + Sync,
        Resp: Serialize + DeserializeOwned + Send,
        Call: std::future::Future<Output = Result<Resp, LlmError>> + Send,
    {
        let key = CacheKey::new(&self.identity, kind, request)?;
        if let Some(hit) = self.lookup_many(vec![key]).await?.into_iter().next().flatten() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let response = call.await?;
        self.store_many(kind, &[(key, &response)]).await?;
        Ok(response)
    }
}

impl<M: ?Sized> fmt::Debug for CachedModel<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedModel")
            .field("identity", &self.identity)
            .field("cache", &self.cache)
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<M: ChatModel + ?Sized> ChatModel for CachedModel<M> {
    fn spec(&self) -> &ModelSpec {
        self.inner.spec()
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.cached_call(RequestKind::Chat, request, self.inner.chat(request)).await
    }

    /// Looks every request up, forwards the misses to the inner model's `chat_batch` in one call (an identical
    /// request appearing twice is forwarded once), and stores the successes in one transaction.
    async fn chat_batch(&self, requests: &[ChatRequest]) -> Vec<Result<ChatResponse, LlmError>> {
        let mut results: Vec<Option<Result<ChatResponse, LlmError>>> = Vec::with_capacity(requests.len());
        let mut keys = Vec::with_capacity(requests.len());
        for request in requests {
            match CacheKey::new(&self.identity, RequestKind::Chat, request) {
                Ok(key) => {
                    keys.push(Some(key));
                    results.push(None);
                }
                Err(err) => {
                    keys.push(None);
                    results.push(Some(Err(err)));
                }
            }
        }
        let valid_keys: Vec<CacheKey> = keys.iter().flatten().copied().collect();
        let found = match self.lookup_many::<ChatResponse>(valid_keys).await {
            Ok(found) => found,
            Err(err) => {
                let message = cache_message(err);
                return requests.iter().map(|_| Err(LlmError::Cache(message.clone()))).collect();
            }
        };
        let mut found = found.into_iter();
        // Misses in first-seen order; `forwarded_idx` maps a key to its position among them.
        let mut miss_requests = Vec::new();
        let mut miss_keys = Vec::new();
        let mut forwarded_idx: std::collections::HashMap<CacheKey, usize> = std::collections::HashMap::new();
        let mut pending: Vec<(usize, usize)> = Vec::new();
        for (request_idx, key) in keys.iter().enumerate() {
            let Some(key) = key else { continue };
            if let Some(hit) = found.next().flatten() {
                self.hits.fetch_add(1, Ordering::Relaxed);
                results[request_idx] = Some(Ok(hit));
                continue;
            }
            match forwarded_idx.get(key) {
                Some(&miss_idx) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    pending.push((request_idx, miss_idx));
                }
                None => {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    forwarded_idx.insert(*key, miss_requests.len());
                    pending.push((request_idx, miss_requests.len()));
                    miss_keys.push(*key);
                    miss_requests.push(requests[request_idx].clone());
                }
            }
        }
        if !miss_requests.is_empty() {
            let mut answers = self.inner.chat_batch(&miss_requests).await;
            let n_answers = answers.len();
            if n_answers != miss_requests.len() {
                answers.truncate(miss_requests.len());
                let message = format!("backend returned {n_answers} results for {} requests", miss_requests.len());
                answers.resize_with(miss_requests.len(), || Err(LlmError::Inference(message.clone())));
            }
            let successes: Vec<(CacheKey, &ChatResponse)> = miss_keys
                .iter()
                .zip(&answers)
                .filter_map(|(key, answer)| answer.as_ref().ok().map(|response| (*key, response)))
                .collect();
            let stored = self.store_many(RequestKind::Chat, &successes).await.map_err(cache_message);
            for (request_idx, miss_idx) in pending {
                results[request_idx] = Some(match (&answers[miss_idx], &stored) {
                    (Ok(response), Ok(())) => Ok(response.clone()),
                    (Ok(_), Err(message)) => Err(LlmError::Cache(message.clone())),
                    (Err(err), _) => Err(copy_error(err)),
                });
            }
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| Err(LlmError::Cache("request was neither looked up nor sent".into())))
            })
            .collect()
    }

    async fn continuation_logprobs(
        &self,
        request: &ContinuationRequest,
    ) -> Result<Vec<ContinuationLogprobs>, LlmError> {
        self.cached_call(RequestKind::Continuation, request, self.inner.continuation_logprobs(request)).await
    }
}

/// The message of a cache error, to be wrapped again in `LlmError::Cache` once per affected request.
fn cache_message(err: LlmError) -> String {
    match err {
        LlmError::Cache(message) => message,
        other => other.to_string(),
    }
}

/// Writes `value` as JSON with object keys sorted and no whitespace.
fn write_canonical_json(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            entries.sort_by_key(|(name, _)| *name);
            out.push('{');
            for (entry_idx, (name, item)) in entries.into_iter().enumerate() {
                if entry_idx > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(name.clone()).to_string());
                out.push(':');
                write_canonical_json(item, out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (item_idx, item) in items.iter().enumerate() {
                if item_idx > 0 {
                    out.push(',');
                }
                write_canonical_json(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn decode_entry<T: DeserializeOwned>(key: &CacheKey, json: &str) -> Option<T> {
    match serde_json::from_str(json) {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::warn!(%key, error = %err, "ignoring a request-cache entry that no longer decodes");
            None
        }
    }
}

/// One batch's error handed to every duplicate of a request: `LlmError` is not `Clone`, so the copy keeps the
/// variants callers branch on (transient or not, unsupported) and the message of the rest.
fn copy_error(err: &LlmError) -> LlmError {
    match err {
        LlmError::Http { status, url, body } => {
            LlmError::Http { status: *status, url: url.clone(), body: body.clone() }
        }
        LlmError::Timeout { url, timeout } => LlmError::Timeout { url: url.clone(), timeout: *timeout },
        LlmError::Connect { url, message } => LlmError::Connect { url: url.clone(), message: message.clone() },
        LlmError::InvalidResponse { url, message } => {
            LlmError::InvalidResponse { url: url.clone(), message: message.clone() }
        }
        LlmError::RetriesExhausted { attempts, last } => {
            LlmError::RetriesExhausted { attempts: *attempts, last: Box::new(copy_error(last)) }
        }
        LlmError::Unsupported(message) => LlmError::Unsupported(message.clone()),
        LlmError::Cache(message) => LlmError::Cache(message.clone()),
        LlmError::Tokenizer(message) => LlmError::Tokenizer(message.clone()),
        other => LlmError::Inference(other.to_string()),
    }
}

/// Runs blocking SQLite work off the async worker threads when inside a tokio runtime, inline otherwise.
async fn run_blocking<R, F>(work: F) -> Result<R, LlmError>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(work).await.map_err(|err| LlmError::Cache(format!("cache task failed: {err}")))
        }
        Err(_) => Ok(work()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json() {
        let check = |value: serde_json::Value, expect: &str| {
            let mut out = String::new();
            write_canonical_json(&value, &mut out);
            assert_eq!(out, expect);
        };
        check(serde_json::json!({"b": 1, "a": [true, null, "x\"y"]}), r#"{"a":[true,null,"x\"y"],"b":1}"#);
        check(serde_json::json!({"z": {"d": 0.5, "c": {}}}), r#"{"z":{"c":{},"d":0.5}}"#);
    }

    #[test]
    fn keys_separate_identity_kind_and_request() {
        let key = |identity: &str, kind: RequestKind, request: serde_json::Value| {
            CacheKey::new(identity, kind, &request).map(|key| key.to_hex()).unwrap_or_default()
        };
        let base = key("m", RequestKind::Chat, serde_json::json!({"a": 1, "b": 2}));
        assert_eq!(base.len(), 64);
        assert_eq!(base, key("m", RequestKind::Chat, serde_json::json!({"b": 2, "a": 1})));
        assert_ne!(base, key("m2", RequestKind::Chat, serde_json::json!({"a": 1, "b": 2})));
        assert_ne!(base, key("m", RequestKind::Continuation, serde_json::json!({"a": 1, "b": 2})));
        assert_ne!(base, key("m", RequestKind::Chat, serde_json::json!({"a": 1, "b": 3})));
    }
}
