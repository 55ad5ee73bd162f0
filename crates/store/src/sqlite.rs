//! The embedded store: bundled SQLite in WAL mode with `synchronous=FULL`, kine-style.
//!
//! Tables:
//! - `podium_meta`: one row with the global `revision` (the newest revision ever written;
//!   never reused, across restarts and deletes) and `compacted` (the newest revision the
//!   change log has been compacted to).
//! - `podium_kv`: the current state, `key → (revision, value)`.
//! - `podium_log`: the change log, `revision → (key, kind, value, prev)`; watches replay it.
//!
//! Writes go to one dedicated writer thread that owns the write connection. It takes
//! every request queued at the moment and commits them in one transaction (group
//! commit: many concurrent writes share one fsync), then updates the in-memory copy of
//! the revision, publishes the changes on a broadcast channel in revision order, and only
//! then acknowledges each write. Reads (`get`, `list`, log replays) run on a small pool of
//! read connections on tokio's blocking pool; WAL lets them proceed during writes.
//!
//! A watch subscribes to the broadcast channel before it reads the log, replays the log
//! up to the revision committed at subscription, and then follows live changes, dropping
//! those it already replayed: no gap, no duplicate. A watcher that falls behind the
//! channel catches up from the log from its last delivered revision (or ends with
//! [`StoreError::Compacted`] if that part of the log is gone).

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;
use tokio::sync::{broadcast, oneshot, Semaphore};

use crate::{
    Filter, ListOptions, ListResult, Preconditions, Revision, Store, StoreError, WatchEvent,
    WatchStream,
};

/// Tunables of a [`SqliteStore`]; `Default` suits a server.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Changes buffered per watcher before it counts as lagging (and catches up from the
    /// log instead).
    pub event_buffer: usize,
    /// At most this many writes are committed in one transaction.
    pub max_batch: usize,
    /// How long a connection waits for a lock held by another connection.
    pub busy_timeout: Duration,
    /// At most this many reads run at once (each holds one read connection).
    pub max_readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            event_buffer: 4096,
            max_batch: 512,
            busy_timeout: Duration::from_secs(10),
            max_readers: 8,
        }
    }
}

/// Log rows replayed per read while a watch catches up.
const REPLAY_PAGE: usize = 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS podium_meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    revision INTEGER NOT NULL,
    compacted INTEGER NOT NULL
);
INSERT OR IGNORE INTO podium_meta (id, revision, compacted) VALUES (0, 0, 0);
CREATE TABLE IF NOT EXISTS podium_kv (
    key TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS podium_log (
    revision INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    kind INTEGER NOT NULL,
    value TEXT NOT NULL,
    prev TEXT
);
";

/// The SQLite implementation of [`Store`]. Cloning is cheap and shares the store; the
/// database is closed when the last clone is dropped (watch streams end then).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Option<mpsc::Sender<WriteRequest>>,
    thread: Option<JoinHandle<()>>,
    events: broadcast::Sender<Arc<Change>>,
    shared: Arc<Shared>,
}

/// What readers and watch streams share (deliberately no broadcast sender, so that the
/// channel closes when the store goes away).
struct Shared {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    readers: Arc<Semaphore>,
    /// The newest committed revision (a cache of `podium_meta.revision`), stored after
    /// the commit and before the changes are published.
    revision: AtomicI64,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field(
                "revision",
                &self.inner.shared.revision.load(Ordering::SeqCst),
            )
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the request channel ends the writer after its current batch.
        self.writer.take();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("sqlite store writer thread panicked");
            }
        }
    }
}

fn backend(op: &'static str, e: impl fmt::Display) -> StoreError {
    StoreError::Backend {
        op,
        detail: e.to_string(),
    }
}

fn configure(conn: &Connection, busy_timeout: Duration) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(busy_timeout)?;
    // FULL: in WAL mode, every commit is fsynced before it returns.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default options.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    pub fn open_with(path: &Path, opts: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let open = |e| backend("open", e);
        let mut conn = Connection::open(path).map_err(open)?;
        conn.busy_timeout(opts.busy_timeout).map_err(open)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(open)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(backend(
                "open",
                format!("cannot enable WAL journal mode (got {mode})"),
            ));
        }
        configure(&conn, opts.busy_timeout).map_err(open)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(open)?;
        tx.execute_batch(SCHEMA).map_err(open)?;
        let revision: i64 = tx
            .query_row("SELECT revision FROM podium_meta WHERE id = 0", [], |r| {
                r.get(0)
            })
            .map_err(open)?;
        tx.commit().map_err(open)?;

        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            busy_timeout: opts.busy_timeout,
            idle: Mutex::new(Vec::new()),
            readers: Arc::new(Semaphore::new(opts.max_readers.max(1))),
            revision: AtomicI64::new(revision),
        });
        let (events, _) = broadcast::channel(opts.event_buffer.max(1));
        let (writer, requests) = mpsc::channel();
        let thread = {
            let events = events.clone();
            let shared = shared.clone();
            let max_batch = opts.max_batch.max(1);
            std::thread::Builder::new()
                .name("podium-sqlite-writer".into())
                .spawn(move || writer_loop(conn, requests, events, shared, max_batch))
                .map_err(|e| backend("open", e))?
        };
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Some(writer),
                thread: Some(thread),
                events,
                shared,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The revision the change log has been compacted to (0 if never).
    pub async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        read(&self.inner.shared, "compacted_revision", |conn| {
            conn.query_row("SELECT compacted FROM podium_meta WHERE id = 0", [], |r| {
                r.get(0)
            })
            .map_err(|e| backend("compacted_revision", e))
        })
        .await
    }

    async fn write(&self, op: WriteOp) -> Result<Value, StoreError> {
        let name = op.name();
        let (reply, answer) = oneshot::channel();
        let sender = self
            .inner
            .writer
            .as_ref()
            .ok_or_else(|| backend(name, "store is closed"))?;
        sender
            .send(WriteRequest { op, reply })
            .map_err(|_| backend(name, "store writer has stopped"))?;
        answer
            .await
            .map_err(|_| backend(name, "store writer stopped before answering"))?
    }
}

// ---------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------

impl Shared {
    fn take_conn(&self) -> Result<Connection, StoreError> {
        let pooled = match self.idle.lock() {
            Ok(mut idle) => idle.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        };
        if let Some(c) = pooled {
            return Ok(c);
        }
        let conn = Connection::open(&self.path).map_err(|e| backend("open reader", e))?;
        configure(&conn, self.busy_timeout).map_err(|e| backend("open reader", e))?;
        Ok(conn)
    }

    fn put_conn(&self, conn: Connection) {
        match self.idle.lock() {
            Ok(mut idle) => idle.push(conn),
            Err(poisoned) => poisoned.into_inner().push(conn),
        }
    }
}

/// Runs `f` on a pooled read connection on the blocking pool.
async fn read<R, F>(shared: &Arc<Shared>, op: &'static str, f: F) -> Result<R, StoreError>
where
    R: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
{
    let permit = shared
        .readers
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| backend(op, e))?;
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut conn = shared.take_conn()?;
        let out = f(&mut conn);
        shared.put_conn(conn);
        out
    })
    .await
    .map_err(|e| backend(op, e))?
}

fn parse_value(key: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        detail: e.to_string(),
    })
}

/// The smallest string greater than every string starting with `prefix` (None: no bound).
/// SQLite compares TEXT bytewise, and UTF-8 byte order is code point order.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let mut next = c as u32 + 1;
        if next == 0xD800 {
            next = 0xE000;
        }
        if let Some(n) = char::from_u32(next) {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn get_blocking(conn: &mut Connection, key: &str) -> Result<Value, StoreError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT value FROM podium_kv WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(|e| backend("get", e))?;
    match text {
        Some(t) => parse_value(key, &t),
        None => Err(StoreError::NotFound {
            key: key.to_string(),
        }),
    }
}

fn list_blocking(
    conn: &mut Connection,
    prefix: &str,
    opts: &ListOptions,
) -> Result<ListResult, StoreError> {
    let err = |e| backend("list", e);
    // One read transaction: the revision and the rows come from the same snapshot.
    let tx = conn.transaction().map_err(err)?;
    let revision: i64 = tx
        .query_row("SELECT revision FROM podium_meta WHERE id = 0", [], |r| {
            r.get(0)
        })
        .map_err(err)?;
    let mut sql = String::from("SELECT key, value FROM podium_kv WHERE key >= ?1");
    let mut args: Vec<String> = vec![prefix.to_string()];
    if let Some(end) = prefix_end(prefix) {
        args.push(end);
        sql.push_str(&format!(" AND key < ?{}", args.len()));
    }
    if let Some(after) = &opts.continue_after {
        args.push(after.clone());
        sql.push_str(&format!(" AND key > ?{}", args.len()));
    }
    sql.push_str(" ORDER BY key");
    let limit = opts.limit.filter(|l| *l > 0);
    let mut items = Vec::new();
    let mut last_key = None;
    let mut remaining: u64 = 0;
    {
        let mut stmt = tx.prepare_cached(&sql).map_err(err)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args.iter()))
            .map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let key: String = row.get(0).map_err(err)?;
            let text: String = row.get(1).map_err(err)?;
            let full = limit.is_some_and(|l| items.len() >= l);
            if full && opts.filter.labels.is_empty() && opts.filter.fields.is_empty() {
                // No filter: every further row counts; no need to decode them.
                remaining += 1;
                continue;
            }
            let value = parse_value(&key, &text)?;
            if !opts.filter.matches(&value) {
                continue;
            }
            if full {
                remaining += 1;
            } else {
                items.push(value);
                last_key = Some(key);
            }
        }
    }
    let cut = remaining > 0;
    Ok(ListResult {
        items,
        revision,
        continue_after: if cut { last_key } else { None },
        remaining: if cut { Some(remaining) } else { None },
    })
}

// ---------------------------------------------------------------------------------------
// Changes and watch
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeKind {
    Added = 0,
    Modified = 1,
    Deleted = 2,
}

impl ChangeKind {
    fn from_i64(v: i64) -> Option<ChangeKind> {
        match v {
            0 => Some(ChangeKind::Added),
            1 => Some(ChangeKind::Modified),
            2 => Some(ChangeKind::Deleted),
            _ => None,
        }
    }
}

/// One logged change. For Deleted, `value` is the object as it was with the delete's
/// revision as resourceVersion; `prev` is set for Modified only.
#[derive(Debug, Clone)]
struct Change {
    revision: Revision,
    key: String,
    kind: ChangeKind,
    value: Value,
    prev: Option<Value>,
}

impl Change {
    /// The event a watcher with `filter` sees, if any (Kubernetes' transition rules).
    fn event(&self, filter: &Filter) -> Option<WatchEvent> {
        let now = filter.matches(&self.value);
        match self.kind {
            ChangeKind::Added => now.then(|| WatchEvent::Added(self.value.clone())),
            ChangeKind::Deleted => now.then(|| WatchEvent::Deleted(self.value.clone())),
            ChangeKind::Modified => {
                let before = self.prev.as_ref().is_none_or(|p| filter.matches(p));
                match (before, now) {
                    (true, true) => Some(WatchEvent::Modified(self.value.clone())),
                    (false, true) => Some(WatchEvent::Added(self.value.clone())),
                    (true, false) => Some(WatchEvent::Deleted(self.value.clone())),
                    (false, false) => None,
                }
            }
        }
    }
}

/// Reads logged changes under `prefix` in `(after, upto]`, at most [`REPLAY_PAGE`];
/// returns them and the revision up to which the log has been covered.
fn read_changes(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
    upto: Revision,
) -> Result<(Vec<Change>, Revision), StoreError> {
    let err = |e| backend("watch", e);
    let tx = conn.transaction().map_err(err)?;
    let compacted: i64 = tx
        .query_row("SELECT compacted FROM podium_meta WHERE id = 0", [], |r| {
            r.get(0)
        })
        .map_err(err)?;
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    let mut sql = String::from(
        "SELECT revision, key, kind, value, prev FROM podium_log \
         WHERE revision > ?1 AND revision <= ?2 AND key >= ?3",
    );
    let end = prefix_end(prefix);
    if end.is_some() {
        sql.push_str(" AND key < ?5");
    }
    sql.push_str(" ORDER BY revision LIMIT ?4");
    let mut stmt = tx.prepare_cached(&sql).map_err(err)?;
    let page = REPLAY_PAGE as i64;
    let mut rows = match &end {
        Some(end) => stmt.query(params![after, upto, prefix, page, end]),
        None => stmt.query(params![after, upto, prefix, page]),
    }
    .map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let revision: i64 = row.get(0).map_err(err)?;
        let key: String = row.get(1).map_err(err)?;
        let kind: i64 = row.get(2).map_err(err)?;
        let value: String = row.get(3).map_err(err)?;
        let prev: Option<String> = row.get(4).map_err(err)?;
        let kind = ChangeKind::from_i64(kind).ok_or_else(|| StoreError::Corrupt {
            key: key.clone(),
            detail: format!("unknown change kind {kind} at revision {revision}"),
        })?;
        let value = parse_value(&key, &value)?;
        let prev = prev.map(|p| parse_value(&key, &p)).transpose()?;
        out.push(Change {
            revision,
            key,
            kind,
            value,
            prev,
        });
    }
    let covered = if out.len() < REPLAY_PAGE {
        upto
    } else {
        out.last().map_or(upto, |c| c.revision)
    };
    Ok((out, covered))
}

struct WatchState {
    shared: Arc<Shared>,
    rx: broadcast::Receiver<Arc<Change>>,
    prefix: String,
    filter: Filter,
    /// Every change up to here has been looked at.
    last: Revision,
    /// Still to replay from the log, up to this revision.
    catch_up_to: Option<Revision>,
    pending: VecDeque<WatchEvent>,
    done: bool,
}

impl WatchState {
    /// Replays one page of the log towards `catch_up_to`.
    async fn catch_up_page(&mut self, target: Revision) -> Result<(), StoreError> {
        let prefix = self.prefix.clone();
        let after = self.last;
        let (changes, covered) = read(&self.shared, "watch", move |conn| {
            read_changes(conn, &prefix, after, target)
        })
        .await?;
        for c in changes {
            if let Some(ev) = c.event(&self.filter) {
                self.pending.push_back(ev);
            }
        }
        self.last = covered;
        if self.last >= target {
            self.catch_up_to = None;
        }
        Ok(())
    }

    async fn next_event(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(ev));
            }
            if let Some(target) = self.catch_up_to {
                if let Err(e) = self.catch_up_page(target).await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(change) => {
                    if change.revision <= self.last {
                        continue; // already replayed from the log
                    }
                    self.last = change.revision;
                    if change.key.starts_with(&self.prefix) {
                        if let Some(ev) = change.event(&self.filter) {
                            return Some(Ok(ev));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    // Every dropped change is committed, so at or below this revision.
                    let target = self.shared.revision.load(Ordering::SeqCst);
                    tracing::debug!(
                        skipped,
                        from = self.last,
                        target,
                        "watcher lagged; replaying log"
                    );
                    self.catch_up_to = Some(target);
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------------------

enum WriteOp {
    Create {
        key: String,
        obj: Value,
    },
    Update {
        key: String,
        obj: Value,
        pre: Preconditions,
    },
    Delete {
        key: String,
        pre: Preconditions,
    },
    Compact {
        revision: Revision,
    },
}

impl WriteOp {
    fn name(&self) -> &'static str {
        match self {
            WriteOp::Create { .. } => "create",
            WriteOp::Update { .. } => "update",
            WriteOp::Delete { .. } => "delete",
            WriteOp::Compact { .. } => "compact",
        }
    }
}

struct WriteRequest {
    op: WriteOp,
    reply: oneshot::Sender<Result<Value, StoreError>>,
}

/// Why one write in a batch did not happen: either the write alone fails (the batch goes
/// on), or the database failed and the whole batch is rolled back.
enum OpError {
    Fail(StoreError),
    Abort(rusqlite::Error),
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> Self {
        OpError::Abort(e)
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Fail(e)
    }
}

fn writer_loop(
    mut conn: Connection,
    requests: mpsc::Receiver<WriteRequest>,
    events: broadcast::Sender<Arc<Change>>,
    shared: Arc<Shared>,
    max_batch: usize,
) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let (ops, replies): (Vec<WriteOp>, Vec<_>) =
            batch.into_iter().map(|r| (r.op, r.reply)).unzip();
        match commit_batch(&mut conn, ops) {
            Ok((revision, results, changes)) => {
                shared.revision.store(revision, Ordering::SeqCst);
                for c in changes {
                    // No receivers is fine: nobody is watching.
                    let _ = events.send(Arc::new(c));
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "sqlite store batch failed; rolled back");
                for reply in replies {
                    let _ = reply.send(Err(backend("commit", &e)));
                }
            }
        }
    }
}

type BatchOutcome = (Revision, Vec<Result<Value, StoreError>>, Vec<Change>);

/// Applies `ops` in one transaction, in order; each later op sees the earlier ones.
fn commit_batch(conn: &mut Connection, ops: Vec<WriteOp>) -> Result<BatchOutcome, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (start, mut compacted): (i64, i64) = tx.query_row(
        "SELECT revision, compacted FROM podium_meta WHERE id = 0",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut revision = start;
    let mut results = Vec::with_capacity(ops.len());
    let mut changes = Vec::new();
    for op in ops {
        let out = match op {
            WriteOp::Create { key, obj } => {
                apply_create(&tx, &mut revision, key, obj, &mut changes)
            }
            WriteOp::Update { key, obj, pre } => {
                apply_update(&tx, &mut revision, key, obj, &pre, &mut changes)
            }
            WriteOp::Delete { key, pre } => {
                apply_delete(&tx, &mut revision, key, &pre, &mut changes)
            }
            WriteOp::Compact { revision: to } => apply_compact(&tx, revision, &mut compacted, to),
        };
        match out {
            Ok(v) => results.push(Ok(v)),
            Err(OpError::Fail(e)) => results.push(Err(e)),
            Err(OpError::Abort(e)) => return Err(e), // dropping tx rolls back
        }
    }
    if revision != start {
        tx.execute(
            "UPDATE podium_meta SET revision = ?1 WHERE id = 0",
            [revision],
        )?;
    }
    tx.commit()?;
    Ok((revision, results, changes))
}

/// Sets `metadata.resourceVersion`; the object must be a JSON object.
fn set_resource_version(
    key: &str,
    op: &'static str,
    obj: &mut Value,
    rev: Revision,
) -> Result<(), OpError> {
    let not_object = |what: &str| {
        OpError::Fail(StoreError::Backend {
            op,
            detail: format!("{what} of the object for {key} is not a JSON object"),
        })
    };
    let map = obj.as_object_mut().ok_or_else(|| not_object("the value"))?;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let meta = meta.as_object_mut().ok_or_else(|| not_object("metadata"))?;
    meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    Ok(())
}

fn to_text(key: &str, op: &'static str, obj: &Value) -> Result<String, OpError> {
    serde_json::to_string(obj).map_err(|e| {
        OpError::Fail(StoreError::Backend {
            op,
            detail: format!("cannot encode the object for {key}: {e}"),
        })
    })
}

/// The current `(revision, value)` at `key`, or NotFound.
fn current(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
) -> Result<(Revision, Value, String), OpError> {
    let row: Option<(i64, String)> = tx
        .prepare_cached("SELECT revision, value FROM podium_kv WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (rev, text) = row.ok_or_else(|| StoreError::NotFound {
        key: key.to_string(),
    })?;
    let value = parse_value(key, &text)?;
    Ok((rev, value, text))
}

fn check_preconditions(
    key: &str,
    current_rev: Revision,
    current: &Value,
    pre: &Preconditions,
) -> Result<(), StoreError> {
    if let Some(rv) = pre.resource_version {
        if rv != current_rev {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                detail: format!(
                    "the resourceVersion in the precondition ({rv}) does not match the current one ({current_rev})"
                ),
            });
        }
    }
    if let Some(uid) = &pre.uid {
        let have = current
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        if have != uid {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                detail: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                ),
            });
        }
    }
    Ok(())
}

fn log_change(
    tx: &rusqlite::Transaction<'_>,
    revision: Revision,
    key: &str,
    kind: ChangeKind,
    value: &str,
    prev: Option<&str>,
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO podium_log (revision, key, kind, value, prev) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![revision, key, kind as i64, value, prev])?;
    Ok(())
}

fn apply_create(
    tx: &rusqlite::Transaction<'_>,
    revision: &mut Revision,
    key: String,
    mut obj: Value,
    changes: &mut Vec<Change>,
) -> Result<Value, OpError> {
    let exists = tx
        .prepare_cached("SELECT 1 FROM podium_kv WHERE key = ?1")?
        .query_row([&key], |_| Ok(()))
        .optional()?
        .is_some();
    if exists {
        return Err(StoreError::AlreadyExists { key }.into());
    }
    let rev = *revision + 1;
    set_resource_version(&key, "create", &mut obj, rev)?;
    let text = to_text(&key, "create", &obj)?;
    tx.prepare_cached("INSERT INTO podium_kv (key, revision, value) VALUES (?1, ?2, ?3)")?
        .execute(params![key, rev, text])?;
    log_change(tx, rev, &key, ChangeKind::Added, &text, None)?;
    *revision = rev;
    changes.push(Change {
        revision: rev,
        key,
        kind: ChangeKind::Added,
        value: obj.clone(),
        prev: None,
    });
    Ok(obj)
}

fn apply_update(
    tx: &rusqlite::Transaction<'_>,
    revision: &mut Revision,
    key: String,
    mut obj: Value,
    pre: &Preconditions,
    changes: &mut Vec<Change>,
) -> Result<Value, OpError> {
    let (cur_rev, cur, cur_text) = current(tx, &key)?;
    check_preconditions(&key, cur_rev, &cur, pre)?;
    let rev = *revision + 1;
    set_resource_version(&key, "update", &mut obj, rev)?;
    let text = to_text(&key, "update", &obj)?;
    tx.prepare_cached("UPDATE podium_kv SET revision = ?2, value = ?3 WHERE key = ?1")?
        .execute(params![key, rev, text])?;
    log_change(tx, rev, &key, ChangeKind::Modified, &text, Some(&cur_text))?;
    *revision = rev;
    changes.push(Change {
        revision: rev,
        key,
        kind: ChangeKind::Modified,
        value: obj.clone(),
        prev: Some(cur),
    });
    Ok(obj)
}

fn apply_delete(
    tx: &rusqlite::Transaction<'_>,
    revision: &mut Revision,
    key: String,
    pre: &Preconditions,
    changes: &mut Vec<Change>,
) -> Result<Value, OpError> {
    let (cur_rev, mut obj, _) = current(tx, &key)?;
    check_preconditions(&key, cur_rev, &obj, pre)?;
    let rev = *revision + 1;
    set_resource_version(&key, "delete", &mut obj, rev)?;
    let text = to_text(&key, "delete", &obj)?;
    tx.prepare_cached("DELETE FROM podium_kv WHERE key = ?1")?
        .execute([&key])?;
    log_change(tx, rev, &key, ChangeKind::Deleted, &text, None)?;
    *revision = rev;
    changes.push(Change {
        revision: rev,
        key,
        kind: ChangeKind::Deleted,
        value: obj.clone(),
        prev: None,
    });
    Ok(obj)
}

fn apply_compact(
    tx: &rusqlite::Transaction<'_>,
    revision: Revision,
    compacted: &mut Revision,
    to: Revision,
) -> Result<Value, OpError> {
    if to > revision {
        return Err(StoreError::Backend {
            op: "compact",
            detail: format!("revision {to} is newer than the current revision {revision}"),
        }
        .into());
    }
    if to <= *compacted {
        return Ok(Value::Null); // already compacted that far
    }
    tx.execute("DELETE FROM podium_log WHERE revision <= ?1", [to])?;
    tx.execute("UPDATE podium_meta SET compacted = ?1 WHERE id = 0", [to])?;
    *compacted = to;
    Ok(Value::Null)
}

// ---------------------------------------------------------------------------------------
// The trait
// ---------------------------------------------------------------------------------------

#[async_trait]
impl Store for SqliteStore {
    async fn create(&self, key: &str, obj: Value) -> Result<Value, StoreError> {
        self.write(WriteOp::Create {
            key: key.to_string(),
            obj,
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Value, StoreError> {
        let key = key.to_string();
        read(&self.inner.shared, "get", move |conn| {
            get_blocking(conn, &key)
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        obj: Value,
        pre: &Preconditions,
    ) -> Result<Value, StoreError> {
        self.write(WriteOp::Update {
            key: key.to_string(),
            obj,
            pre: pre.clone(),
        })
        .await
    }

    async fn delete(&self, key: &str, pre: &Preconditions) -> Result<Value, StoreError> {
        self.write(WriteOp::Delete {
            key: key.to_string(),
            pre: pre.clone(),
        })
        .await
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StoreError> {
        let prefix = prefix.to_string();
        let opts = opts.clone();
        read(&self.inner.shared, "list", move |conn| {
            list_blocking(conn, &prefix, &opts)
        })
        .await
    }

    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
        filter: Filter,
    ) -> Result<WatchStream, StoreError> {
        // Subscribe first: every change committed after this point reaches `rx`, and
        // every change committed before it is at or below `target` and in the log.
        let rx = self.inner.events.subscribe();
        let target = self.inner.shared.revision.load(Ordering::SeqCst);
        let mut state = WatchState {
            shared: self.inner.shared.clone(),
            rx,
            prefix: prefix.to_string(),
            filter,
            last: after,
            catch_up_to: (target > after).then_some(target),
            pending: VecDeque::new(),
            done: false,
        };
        // The first page is read here so that a compacted `after` fails the call itself.
        match state.catch_up_to {
            Some(target) => state.catch_up_page(target).await?,
            None => {
                let compacted = self.compacted_revision().await?;
                if after < compacted {
                    return Err(StoreError::Compacted {
                        requested: after,
                        compacted,
                    });
                }
            }
        }
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut st| async move {
                let item = st.next_event().await?;
                Some((item, st))
            },
        )))
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.shared.revision.load(Ordering::SeqCst))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.write(WriteOp::Compact { revision }).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(
            prefix_end("/registry/pods/"),
            Some("/registry/pods0".to_string())
        );
        assert_eq!(prefix_end("a"), Some("b".to_string()));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a\u{10FFFF}"), Some("b".to_string()));
        assert_eq!(prefix_end("\u{D7FF}"), Some("\u{E000}".to_string()));
        let end = prefix_end("/a/").unwrap();
        assert!("/a/zzz" < end.as_str());
        assert!("/a0" >= end.as_str());
    }

    #[test]
    fn change_events_follow_filter_transitions() {
        let filter = Filter {
            labels: crate::LabelSelector::parse("app=web").unwrap(),
            ..Default::default()
        };
        let web = serde_json::json!({"metadata": {"labels": {"app": "web"}}});
        let db = serde_json::json!({"metadata": {"labels": {"app": "db"}}});
        let change = |kind, value: &Value, prev: Option<&Value>| Change {
            revision: 1,
            key: "k".into(),
            kind,
            value: value.clone(),
            prev: prev.cloned(),
        };
        use ChangeKind::*;
        assert_eq!(
            change(Added, &web, None).event(&filter),
            Some(WatchEvent::Added(web.clone()))
        );
        assert_eq!(change(Added, &db, None).event(&filter), None);
        assert_eq!(
            change(Modified, &web, Some(&web)).event(&filter),
            Some(WatchEvent::Modified(web.clone()))
        );
        assert_eq!(
            change(Modified, &web, Some(&db)).event(&filter),
            Some(WatchEvent::Added(web.clone()))
        );
        assert_eq!(
            change(Modified, &db, Some(&web)).event(&filter),
            Some(WatchEvent::Deleted(db.clone()))
        );
        assert_eq!(change(Modified, &db, Some(&db)).event(&filter), None);
        assert_eq!(
            change(Deleted, &web, None).event(&filter),
            Some(WatchEvent::Deleted(web.clone()))
        );
        assert_eq!(change(Deleted, &db, None).event(&filter), None);
    }
}
