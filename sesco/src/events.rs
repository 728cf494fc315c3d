//! The event log: every step is numbered, pushed to every watcher, and written to the
//! store in batches.
//!
//! Events are a log of what happened, not the state: the state (sessions, the world) is
//! written before anything is acknowledged; events are numbered and published at once and
//! written by a background task in one transaction per batch, so that a set-point
//! fan-out to a thousand control ports is not a thousand separate writes. Whoever reads
//! the log flushes it first, so a reader never misses an event already published.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sesco_proto::SessionId;
use sesco_proto::event::{Event, EventKind};

use crate::limits::{MAX_WATCHERS, MAX_WATCHERS_PER_USER};
use crate::store::{Store, StoreError};

/// Numbers events and holds those not yet written.
pub struct EventLog {
    next_seq: AtomicU64,
    pending: Mutex<Vec<Event>>,
    written: tokio::sync::Notify,
}

impl EventLog {
    /// Continues the numbering after `last_seq`.
    pub fn new(last_seq: u64) -> Self {
        Self {
            next_seq: AtomicU64::new(last_seq + 1),
            pending: Mutex::new(Vec::new()),
            written: tokio::sync::Notify::new(),
        }
    }

    /// Numbers an event and queues it for writing.
    pub fn record(
        &self,
        time_ms: u64,
        session: Option<SessionId>,
        node: Option<&str>,
        kind: EventKind,
    ) -> Event {
        let mut pending = self.pending.lock().expect("event log lock");
        let event = Event {
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            time_ms,
            session,
            node: node.map(str::to_string),
            kind,
        };
        pending.push(event.clone());
        drop(pending);
        self.written.notify_one();
        event
    }

    /// Writes every queued event. The caller holds the store, so flushes are ordered.
    pub fn flush(&self, store: &mut Store) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut *self.pending.lock().expect("event log lock"));
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = store.append_events(&batch) {
            // Keep them for the next attempt, ahead of newer ones.
            let mut pending = self.pending.lock().expect("event log lock");
            let newer = std::mem::replace(&mut *pending, batch);
            pending.extend(newer);
            return Err(e);
        }
        Ok(())
    }

    /// Resolves when events may be waiting to be written.
    pub async fn queued(&self) {
        self.written.notified().await
    }
}
use sesco_proto::peer::Peer;
use sesco_proto::{ErrorCode, ErrorReply};

/// Who may see an event: admins see all; a user sees the events of their own sessions.
#[derive(Clone)]
pub struct Watcher {
    pub peer: Peer,
    /// `None` for admins.
    pub user: Option<String>,
    /// Who is watching (for the per-user limit).
    pub name: String,
}

/// Fans events out to watchers.
#[derive(Default)]
pub struct Watchers {
    watchers: Mutex<Vec<Watcher>>,
}

impl Watchers {
    /// Adds a watcher, within the limits on watchers in all and per user.
    pub fn add(&self, watcher: Watcher) -> Result<(), ErrorReply> {
        let mut watchers = self.watchers.lock().expect("watchers lock");
        watchers.retain(|w| !w.peer.is_closed());
        if watchers.len() >= MAX_WATCHERS {
            return Err(ErrorReply::new(
                ErrorCode::LimitExceeded,
                format!("Sesco serves at most {MAX_WATCHERS} watchers at once"),
            ));
        }
        if watchers.iter().filter(|w| w.name == watcher.name).count() >= MAX_WATCHERS_PER_USER {
            return Err(ErrorReply::new(
                ErrorCode::LimitExceeded,
                format!(
                    "{} already watches on {MAX_WATCHERS_PER_USER} connections",
                    watcher.name
                ),
            ));
        }
        watchers.push(watcher);
        Ok(())
    }

    /// Pushes `event` to every watcher allowed to see it. `owner` is the user owning the
    /// event's session, if any. Watchers that are gone are forgotten; watchers too slow to
    /// keep up are disconnected with an error rather than slowing everyone down.
    pub fn publish(&self, event: &Event, owner: Option<&str>) {
        let mut slow = Vec::new();
        {
            let mut watchers = self.watchers.lock().expect("watchers lock");
            watchers.retain(|w| !w.peer.is_closed());
            watchers.retain(|w| {
                let allowed = match (&w.user, owner) {
                    (None, _) => true,
                    (Some(user), Some(owner)) => user == owner,
                    (Some(_), None) => false,
                };
                if !allowed || w.peer.try_push_event(event.clone()) {
                    return true;
                }
                slow.push(w.peer.clone());
                false
            });
        }
        for peer in slow {
            tokio::spawn(async move {
                peer.close(Some(ErrorReply::new(
                    ErrorCode::LimitExceeded,
                    "event watcher too slow to keep up; reconnect to resume",
                )))
                .await;
            });
        }
    }
}
