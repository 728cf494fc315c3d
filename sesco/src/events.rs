//! The event log: every step is persisted, then pushed to every watcher.

use std::sync::Mutex;

use sesco_proto::event::Event;
use sesco_proto::peer::Peer;
use sesco_proto::{ErrorCode, ErrorReply};

/// Who may see an event: admins see all; a user sees the events of their own sessions.
#[derive(Clone)]
pub struct Watcher {
    pub peer: Peer,
    /// `None` for admins.
    pub user: Option<String>,
}

/// Fans events out to watchers. Persistence is the caller's (see
/// [`crate::coordinator::Coordinator::emit`]), so that an event is stored before anyone
/// sees it.
#[derive(Default)]
pub struct Watchers {
    watchers: Mutex<Vec<Watcher>>,
}

impl Watchers {
    pub fn add(&self, watcher: Watcher) {
        self.watchers.lock().expect("watchers lock").push(watcher);
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
