//! Limits on what the network may ask: sizes, counts and rates. Each refusal is a clear
//! `LimitExceeded` (or `Invalid`) error and changes nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sesco_proto::{ErrorCode, ErrorReply};

/// Longest user name, node name or other identifier in a hello.
pub const MAX_NAME: usize = 64;
/// Longest password accepted (argon2 work grows with it).
pub const MAX_PASSWORD: usize = 1024;
/// Longest secret (token, key) in a hello.
pub const MAX_SECRET: usize = 256;
/// Longest free text (a hello's agent, a request key, a world file's name).
pub const MAX_TEXT: usize = 256;
/// Most entries in one QoS report.
pub const MAX_QOS_ENTRIES: usize = 64;
/// Watchers at once, in all and per user.
pub const MAX_WATCHERS: usize = 1024;
pub const MAX_WATCHERS_PER_USER: usize = 16;

/// Failed sign-ins allowed per user, and per source address (which many users may
/// share), in [`SIGN_IN_WINDOW`].
const SIGN_IN_FAILURES: usize = 5;
const SIGN_IN_FAILURES_PER_SOURCE: usize = 20;
const SIGN_IN_WINDOW: Duration = Duration::from_secs(60);

/// Refuses text longer than `max` bytes.
pub fn check_len(what: &str, text: &str, max: usize) -> Result<(), ErrorReply> {
    if text.len() > max {
        return Err(ErrorReply::new(
            ErrorCode::Invalid,
            format!(
                "{what} is {} bytes long; at most {max} are accepted",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// Recent failed sign-ins, by user and by source address.
#[derive(Default)]
pub struct SignInThrottle {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl SignInThrottle {
    fn keys(user: &str, source: Option<IpAddr>) -> Vec<(String, usize)> {
        let mut keys = vec![(format!("user:{user}"), SIGN_IN_FAILURES)];
        if let Some(ip) = source {
            keys.push((format!("addr:{ip}"), SIGN_IN_FAILURES_PER_SOURCE));
        }
        keys
    }

    /// Refuses a sign-in while its user or its source has failed too often lately.
    pub fn check(&self, user: &str, source: Option<IpAddr>) -> Result<(), ErrorReply> {
        let mut failures = self.failures.lock().expect("sign-in throttle lock");
        let now = Instant::now();
        for (key, allowed) in Self::keys(user, source) {
            if let Some(times) = failures.get_mut(&key) {
                times.retain(|t| now.duration_since(*t) < SIGN_IN_WINDOW);
                if times.len() >= allowed {
                    let wait = SIGN_IN_WINDOW.saturating_sub(now.duration_since(times[0]));
                    return Err(ErrorReply::new(
                        ErrorCode::LimitExceeded,
                        format!(
                            "too many failed sign-ins for {}; try again in {} s",
                            key.split_once(':').map_or(key.as_str(), |(_, k)| k),
                            wait.as_secs().max(1)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Records a failed sign-in.
    pub fn failed(&self, user: &str, source: Option<IpAddr>) {
        let mut failures = self.failures.lock().expect("sign-in throttle lock");
        let now = Instant::now();
        // Forget stale entries now and then so the map stays small.
        if failures.len() > 10_000 {
            failures.retain(|_, times| {
                times
                    .iter()
                    .any(|t| now.duration_since(*t) < SIGN_IN_WINDOW)
            });
        }
        for (key, _) in Self::keys(user, source) {
            failures.entry(key).or_default().push(now);
        }
    }

    /// A successful sign-in clears its user's failures.
    pub fn succeeded(&self, user: &str) {
        self.failures
            .lock()
            .expect("sign-in throttle lock")
            .remove(&format!("user:{user}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_throttled_after_repeated_failures_and_cleared_by_a_success() {
        let throttle = SignInThrottle::default();
        let addr: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        for _ in 0..SIGN_IN_FAILURES {
            throttle.check("alice", addr).unwrap();
            throttle.failed("alice", addr);
        }
        let refused = throttle.check("alice", None).unwrap_err();
        assert_eq!(refused.code, ErrorCode::LimitExceeded);
        assert!(refused.message.contains("alice"), "{refused:?}");
        // Other users from the same source are not, until the source itself fails often.
        assert!(throttle.check("bob", addr).is_ok());
        for i in SIGN_IN_FAILURES..SIGN_IN_FAILURES_PER_SOURCE {
            throttle.failed(&format!("user{i}"), addr);
        }
        assert!(throttle.check("bob", addr).is_err());
        assert!(
            throttle
                .check("bob", Some("10.0.0.2".parse().unwrap()))
                .is_ok()
        );
        throttle.succeeded("alice");
        assert!(throttle.check("alice", None).is_ok());
    }

    #[test]
    fn overlong_text_is_refused() {
        assert!(check_len("a name", "alice", MAX_NAME).is_ok());
        let long = "x".repeat(MAX_NAME + 1);
        assert_eq!(
            check_len("a name", &long, MAX_NAME).unwrap_err().code,
            ErrorCode::Invalid
        );
    }
}
