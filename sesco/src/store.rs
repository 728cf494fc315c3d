//! Persistence: the world, sessions, events and sign-in tokens in one SQLite database.
//!
//! Every change that is acknowledged to anyone is written here first. Applications and
//! sessions are stored as JSON documents (their shape is owned by `sesco-proto` and
//! [`crate::session`]); users, groups and nodes as rows.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use sesco_proto::SessionId;
use sesco_proto::event::Event;
use sesco_proto::world::{GroupDef, UserDef, World};

use crate::session::SessionRecord;

/// A failure of the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt record in the database: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("the database was written by a newer Sesco (schema {found}, this build knows {known})")]
    NewerSchema { found: i64, known: i64 },
}

type Result<T> = std::result::Result<T, StoreError>;

/// An event row: seq, time, session, node, kind (JSON).
type EventRow = (i64, i64, Option<i64>, Option<String>, String);

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS groups (
    name TEXT PRIMARY KEY,
    priority REAL NOT NULL,
    description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    unix_account TEXT NOT NULL,
    group_name TEXT NOT NULL,
    priority REAL NOT NULL,
    admin INTEGER NOT NULL,
    password_hash TEXT
);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, def TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS applications (name TEXT PRIMARY KEY, def TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    live INTEGER NOT NULL,
    request_key TEXT,
    variant TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_live ON sessions (live);
CREATE UNIQUE INDEX IF NOT EXISTS sessions_request_key ON sessions (user, request_key)
    WHERE request_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    session INTEGER,
    node TEXT,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
";

/// What one change writes, in one transaction.
#[derive(Debug, Default)]
pub struct Writes {
    /// New sessions.
    pub inserted: Vec<SessionRecord>,
    /// Sessions whose record changed (ended ones included).
    pub saved: Vec<SessionRecord>,
    /// A new world, replacing the stored one whole.
    pub world: Option<World>,
}

impl Writes {
    pub fn is_empty(&self) -> bool {
        self.inserted.is_empty() && self.saved.is_empty() && self.world.is_none()
    }
}

/// The database.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let store = Self { conn };
        store.migrate()?;
        match store.meta("schema_version")? {
            None => store.set_meta("schema_version", &SCHEMA_VERSION.to_string())?,
            Some(found) => {
                let found: i64 = found.parse().unwrap_or(i64::MAX);
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        found,
                        known: SCHEMA_VERSION,
                    });
                }
            }
        }
        Ok(store)
    }

    /// Brings a database written by an earlier version up to this schema, in one
    /// transaction: sessions' variants, once inside each record, get a column of their
    /// own (records are rewritten often; the variant never changes).
    fn migrate(&self) -> Result<()> {
        let has_variant = self
            .conn
            .prepare("SELECT 1 FROM pragma_table_info('sessions') WHERE name = 'variant'")?
            .exists([])?;
        if has_variant {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction()?;
        tx.execute_batch("ALTER TABLE sessions ADD COLUMN variant TEXT NOT NULL DEFAULT 'null'")?;
        let rows: Vec<(i64, String)> = tx
            .prepare("SELECT id, record FROM sessions")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, record) in rows {
            let record: serde_json::Value = serde_json::from_str(&record)?;
            let variant = record.get("variant").cloned().unwrap_or_default();
            tx.execute(
                "UPDATE sessions SET variant = ?1 WHERE id = ?2",
                params![variant.to_string(), id],
            )?;
        }
        tx.commit()?;
        tracing::info!("database migrated: session variants in a column of their own");
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    // ---- the world ----------------------------------------------------------------

    /// The whole world, in a stable order (by name).
    pub fn load_world(&self) -> Result<World> {
        let mut world = World::default();
        let mut stmt = self
            .conn
            .prepare("SELECT name, priority, description FROM groups ORDER BY name")?;
        world.groups = stmt
            .query_map([], |r| {
                Ok(GroupDef {
                    name: r.get(0)?,
                    priority: r.get(1)?,
                    description: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut stmt = self.conn.prepare(
            "SELECT name, unix_account, group_name, priority, admin, password_hash
             FROM users ORDER BY name",
        )?;
        world.users = stmt
            .query_map([], |r| {
                Ok(UserDef {
                    name: r.get(0)?,
                    unix_account: r.get(1)?,
                    group: r.get(2)?,
                    priority: r.get(3)?,
                    admin: r.get(4)?,
                    password_hash: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        world.nodes = self.load_json_rows("SELECT def FROM nodes ORDER BY name")?;
        world.applications = self.load_json_rows("SELECT def FROM applications ORDER BY name")?;
        Ok(world)
    }

    fn load_json_rows<T: serde::de::DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>> {
        let mut stmt = self.conn.prepare(sql)?;
        let texts: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        texts
            .iter()
            .map(|t| serde_json::from_str(t).map_err(StoreError::from))
            .collect()
    }

    /// Writes what one change decided, in one transaction: all of it or nothing.
    pub fn commit(&mut self, writes: &Writes) -> Result<()> {
        let tx = self.conn.transaction()?;
        if let Some(world) = &writes.world {
            replace_world(&tx, world)?;
        }
        for record in &writes.inserted {
            insert_session(&tx, record)?;
        }
        for record in &writes.saved {
            write_session(&tx, record)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Caps the database at `pages` pages, so that writes past it fail as on a full
    /// disk (for tests of what a failed write leaves).
    pub fn limit_pages(&self, pages: u64) -> Result<()> {
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        Ok(())
    }

    /// Pages the database holds now.
    pub fn page_count(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Replaces the whole world in one transaction. Users whose entry carries no
    /// password hash keep the one they had.
    pub fn replace_world(&mut self, world: &World) -> Result<()> {
        let tx = self.conn.transaction()?;
        replace_world(&tx, world)?;
        tx.commit()?;
        Ok(())
    }

    pub fn put_group(&self, group: &GroupDef) -> Result<()> {
        put_group(&self.conn, group)
    }

    pub fn put_user(&self, user: &UserDef) -> Result<()> {
        put_user(&self.conn, user)
    }

    pub fn set_password_hash(&self, user: &str, hash: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE users SET password_hash = ?2 WHERE name = ?1",
            [user, hash],
        )? > 0)
    }

    // ---- sessions ---------------------------------------------------------------------

    /// The id the next session will get. Only the holder of the allocation lock inserts
    /// sessions, so it stays free until then.
    pub fn next_session_id(&self) -> Result<SessionId> {
        let max: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(id), 0) FROM sessions", [], |r| {
                    r.get(0)
                })?;
        Ok(SessionId(max as u64 + 1))
    }

    /// Stores a new session under its id.
    pub fn insert_session(&self, record: &SessionRecord) -> Result<()> {
        insert_session(&self.conn, record)
    }

    /// Session records from rows of (variant, record).
    fn load_sessions(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<SessionRecord>> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows: Vec<(String, String)> = stmt
            .query_map(args, |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        rows.iter()
            .map(|(variant, record)| {
                let mut record: SessionRecord = serde_json::from_str(record)?;
                record.variant = std::sync::Arc::new(serde_json::from_str(variant)?);
                Ok(record)
            })
            .collect()
    }

    /// Writes a session's current record.
    pub fn save_session(&self, record: &SessionRecord) -> Result<()> {
        write_session(&self.conn, record)
    }

    /// Writes several session records in one transaction.
    pub fn save_sessions<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a SessionRecord>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        for record in records {
            write_session(&tx, record)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn load_session(&self, id: SessionId) -> Result<Option<SessionRecord>> {
        Ok(self
            .load_sessions(
                "SELECT variant, record FROM sessions WHERE id = ?1",
                [id.0 as i64],
            )?
            .pop())
    }

    /// Sessions still holding resources.
    pub fn load_live_sessions(&self) -> Result<Vec<SessionRecord>> {
        self.load_sessions(
            "SELECT variant, record FROM sessions WHERE live = 1 ORDER BY id",
            [],
        )
    }

    /// The most recent sessions, newest last; `user` restricts to one user's.
    pub fn load_recent_sessions(
        &self,
        user: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SessionRecord>> {
        self.load_sessions(
            "SELECT variant, record FROM (
                SELECT id, variant, record FROM sessions WHERE (?1 IS NULL OR user = ?1)
                ORDER BY id DESC LIMIT ?2
             ) ORDER BY id",
            params![user, limit],
        )
    }

    /// The session a user created with `request_key`, if any.
    pub fn session_by_request_key(&self, user: &str, key: &str) -> Result<Option<SessionRecord>> {
        Ok(self
            .load_sessions(
                "SELECT variant, record FROM sessions WHERE user = ?1 AND request_key = ?2",
                [user, key],
            )?
            .pop())
    }

    // ---- events -----------------------------------------------------------------------

    /// Writes events (numbered by the caller) in one transaction.
    pub fn append_events(&mut self, events: &[Event]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (seq, time_ms, session, node, kind) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for e in events {
                insert.execute(params![
                    e.seq as i64,
                    e.time_ms as i64,
                    e.session.map(|s| s.0 as i64),
                    e.node,
                    serde_json::to_string(&e.kind)?
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The sequence number of the newest event (0 when there is none).
    pub fn last_event_seq(&self) -> Result<u64> {
        let seq: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        Ok(seq as u64)
    }

    /// Events after `since_seq`, oldest first, at most `limit`.
    pub fn events_since(&self, since_seq: u64, limit: u32) -> Result<Vec<Event>> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, time_ms, session, node, kind FROM events WHERE seq > ?1
             ORDER BY seq LIMIT ?2",
        )?;
        let rows: Vec<EventRow> = stmt
            .query_map(params![since_seq as i64, limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        rows.into_iter()
            .map(|(seq, time_ms, session, node, kind)| {
                Ok(Event {
                    seq: seq as u64,
                    time_ms: time_ms as u64,
                    session: session.map(|s| SessionId(s as u64)),
                    node,
                    kind: serde_json::from_str(&kind)?,
                })
            })
            .collect()
    }

    // ---- sign-in tokens -------------------------------------------------------------

    pub fn insert_token(&self, hash: &str, user: &str, expires_ms: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO tokens (hash, user, expires_ms) VALUES (?1, ?2, ?3)",
            params![hash, user, expires_ms as i64],
        )?;
        Ok(())
    }

    /// The user a token belongs to and when it expires.
    pub fn token(&self, hash: &str) -> Result<Option<(String, u64)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT user, expires_ms FROM tokens WHERE hash = ?1",
                [hash],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)),
            )
            .optional()?)
    }

    /// Forgets tokens that expired before `now_ms`.
    pub fn purge_tokens(&self, now_ms: u64) -> Result<usize> {
        Ok(self
            .conn
            .execute("DELETE FROM tokens WHERE expires_ms < ?1", [now_ms as i64])?)
    }

    /// Forgets every token of a user (password changed, user deleted).
    pub fn revoke_tokens(&self, user: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM tokens WHERE user = ?1", [user])?;
        Ok(())
    }
}

fn insert_session(conn: &Connection, record: &SessionRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO sessions (id, user, live, request_key, variant, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            record.id.0 as i64,
            record.user,
            record.state.is_live(),
            record.request_key,
            serde_json::to_string(&record.variant)?,
            serde_json::to_string(record)?
        ],
    )?;
    Ok(())
}

fn write_session(conn: &Connection, record: &SessionRecord) -> Result<()> {
    conn.execute(
        "UPDATE sessions SET live = ?2, record = ?3 WHERE id = ?1",
        params![
            record.id.0 as i64,
            record.state.is_live(),
            serde_json::to_string(record)?
        ],
    )?;
    Ok(())
}

fn put_group(conn: &Connection, group: &GroupDef) -> Result<()> {
    conn.execute(
        "INSERT INTO groups (name, priority, description) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET priority = excluded.priority,
             description = excluded.description",
        params![group.name, group.priority, group.description],
    )?;
    Ok(())
}

fn put_user(conn: &Connection, user: &UserDef) -> Result<()> {
    conn.execute(
        "INSERT INTO users (name, unix_account, group_name, priority, admin, password_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (name) DO UPDATE SET unix_account = excluded.unix_account,
             group_name = excluded.group_name, priority = excluded.priority,
             admin = excluded.admin,
             password_hash = COALESCE(excluded.password_hash, users.password_hash)",
        params![
            user.name,
            user.unix_account,
            user.group,
            user.priority,
            user.admin,
            user.password_hash
        ],
    )?;
    Ok(())
}

fn put_json<T: serde::Serialize>(
    conn: &Connection,
    table: &str,
    name: &str,
    value: &T,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO {table} (name, def) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET def = excluded.def"
    );
    conn.execute(&sql, params![name, serde_json::to_string(value)?])?;
    Ok(())
}

/// Replaces the whole world inside `tx`. Users whose entry carries no password hash keep
/// the one they had.
fn replace_world(tx: &Connection, world: &World) -> Result<()> {
    let old_hashes: Vec<(String, Option<String>)> = {
        let mut stmt = tx.prepare("SELECT name, password_hash FROM users")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    tx.execute_batch(
        "DELETE FROM users; DELETE FROM groups; DELETE FROM nodes; DELETE FROM applications;",
    )?;
    for group in &world.groups {
        put_group(tx, group)?;
    }
    for user in &world.users {
        let mut user = user.clone();
        if user.password_hash.is_none() {
            user.password_hash = old_hashes
                .iter()
                .find(|(name, _)| *name == user.name)
                .and_then(|(_, hash)| hash.clone());
        }
        put_user(tx, &user)?;
    }
    for node in &world.nodes {
        put_json(tx, "nodes", &node.name, node)?;
    }
    for app in &world.applications {
        put_json(tx, "applications", &app.name, app)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_from_before_the_variant_column_is_migrated_and_keeps_its_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sesco.db");
        let mut variant = (*crate::session::unloaded_variant()).clone();
        variant.name = "h264".into();
        let record = serde_json::json!({
            "id": 7, "user": "alice", "application": "encoder", "variant": variant,
            "weight": 2.0, "minimum": [0, 0], "setpoint": [1, 2], "processes": [],
            "state": "Running", "setpoint_sequence": 3, "created_ms": 1, "ended_ms": null,
            "end_reason": null, "request_key": null
        });
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE sessions (id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL,
                 live INTEGER NOT NULL, request_key TEXT, record TEXT NOT NULL);",
            )
            .unwrap();
            old.execute(
                "INSERT INTO sessions (id, user, live, request_key, record) VALUES (7, 'alice', 1, NULL, ?1)",
                [record.to_string()],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let live = store.load_live_sessions().unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].variant.name, "h264");
        assert_eq!(live[0].setpoint, vec![1, 2]);
        // A record written again no longer carries its variant, and loses nothing.
        store.save_session(&live[0]).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.load_live_sessions().unwrap()[0].variant.name, "h264");
    }
}
