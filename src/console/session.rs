//! Console sessions: a token pasted once on the sign-in page is exchanged for a session
//! cookie. The server keeps, per session, the token's hash (every request checks it
//! again, so a revoked or expired token ends its sessions at once), a CSRF token for the
//! session's forms, and when the session ends. The cookie holds only a random session
//! id; the server keeps its SHA-256.
//!
//! Sessions live in the server's memory: a restart signs everybody out, and servers
//! sharing a database do not share sessions (`docs/console.md`).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// How long a session lasts from sign-in.
pub const SESSION_HOURS: i64 = 8;
/// Sessions kept at most; past it, signing in ends the session closest to its end.
pub const MAX_SESSIONS: usize = 10_000;

/// A random value for a cookie or a form: 32 bytes in URL-safe base64.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn key(session_id: &str) -> [u8; 32] {
    Sha256::digest(session_id.as_bytes()).into()
}

/// What the server keeps of a session.
#[derive(Clone)]
pub struct Session {
    /// The hash of the token it was opened with.
    pub token_hash: [u8; 32],
    /// The token the session's forms carry.
    pub csrf: String,
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// How long a new credential waits for its one showing.
const HANDOUT_MINUTES: i64 = 10;

/// A secret just made (a stream's credential when it is created or its key rotated, a
/// token), kept for the one page that shows it, at most one per session.
pub struct Handout {
    /// What the secret is for (a stream's id, a token's id): the page's address names it.
    pub subject: String,
    /// The page's title and heading.
    pub title: String,
    /// What the page says about it (the stream, the key; the token, its user).
    pub facts: Vec<(&'static str, String)>,
    /// The name of the file it downloads as.
    pub file_name: String,
    /// Where the page leads back to, and the link's text.
    pub back: (String, String),
    /// The address of the page that shows it.
    pub shown_at: String,
    pub secret: SecretString,
    until: Timestamp,
}

impl Handout {
    pub fn new(
        subject: String,
        title: String,
        facts: Vec<(&'static str, String)>,
        file_name: String,
        back: (String, String),
        shown_at: String,
        secret: SecretString,
    ) -> Self {
        let now = Timestamp::now();
        Self {
            subject,
            title,
            facts,
            file_name,
            back,
            shown_at,
            secret,
            until: now
                .checked_add(SignedDuration::from_mins(HANDOUT_MINUTES))
                .unwrap_or(now),
        }
    }
}

/// Every open session, by the hash of its id.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
    handouts: Mutex<HashMap<[u8; 32], Handout>>,
    /// Live pages open, by session.
    live: Mutex<HashMap<[u8; 32], usize>>,
}

impl Sessions {
    /// Opens a session for the token with hash `token_hash`; returns its id (for the
    /// cookie) and the session.
    pub fn open(&self, token_hash: [u8; 32], now: Timestamp) -> (String, Session) {
        let id = random_token();
        let session = Session {
            token_hash,
            csrf: random_token(),
            expires_at: now
                .checked_add(SignedDuration::from_hours(SESSION_HOURS))
                .unwrap_or(now),
        };
        let mut open = self.open.lock().expect("sessions lock");
        open.retain(|_, s| s.expires_at > now);
        if open.len() >= MAX_SESSIONS
            && let Some(soonest) = open
                .iter()
                .min_by_key(|(_, s)| s.expires_at)
                .map(|(k, _)| *k)
        {
            open.remove(&soonest);
        }
        open.insert(key(&id), session.clone());
        (id, session)
    }

    /// The session of `id`, if it is open at `now`.
    pub fn get(&self, id: &str, now: Timestamp) -> Option<Session> {
        let open = self.open.lock().expect("sessions lock");
        open.get(&key(id)).filter(|s| s.expires_at > now).cloned()
    }

    /// Ends the session of `id`.
    pub fn close(&self, id: &str) {
        self.open.lock().expect("sessions lock").remove(&key(id));
        self.handouts
            .lock()
            .expect("handouts lock")
            .remove(&key(id));
    }

    /// Counts a live page of session `id` in, unless it has `max` open already.
    pub fn enter_live(&self, id: &str, max: usize) -> bool {
        let mut live = self.live.lock().expect("live pages lock");
        let open = live.entry(key(id)).or_default();
        if *open >= max {
            return false;
        }
        *open += 1;
        true
    }

    /// Counts a live page of session `id` out.
    pub fn leave_live(&self, id: &str) {
        let mut live = self.live.lock().expect("live pages lock");
        let k = key(id);
        if let Some(open) = live.get_mut(&k) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                live.remove(&k);
            }
        }
    }

    /// Keeps `handout` for the session `id`'s next look at it (replacing any other; past
    /// [`MAX_SESSIONS`] kept, the one closest to its end makes room).
    pub fn hand_out(&self, id: &str, handout: Handout) {
        let now = Timestamp::now();
        let mut handouts = self.handouts.lock().expect("handouts lock");
        handouts.retain(|_, h| h.until > now);
        if handouts.len() >= MAX_SESSIONS
            && !handouts.contains_key(&key(id))
            && let Some(soonest) = handouts
                .iter()
                .min_by_key(|(_, h)| h.until)
                .map(|(k, _)| *k)
        {
            handouts.remove(&soonest);
        }
        handouts.insert(key(id), handout);
    }

    /// The secret kept for session `id` about `subject`, once.
    pub fn take_handout(&self, id: &str, subject: &str) -> Option<Handout> {
        let mut handouts = self.handouts.lock().expect("handouts lock");
        let k = key(id);
        let fits = handouts
            .get(&k)
            .is_some_and(|h| h.subject == subject && h.until > Timestamp::now());
        if fits { handouts.remove(&k) } else { None }
    }
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_until_it_ends_or_is_closed() {
        let sessions = Sessions::default();
        let now = Timestamp::UNIX_EPOCH;
        let (id, session) = sessions.open([7; 32], now);
        assert_eq!(sessions.get(&id, now).unwrap().csrf, session.csrf);
        assert!(sessions.get("another", now).is_none());
        let later = now + SignedDuration::from_hours(SESSION_HOURS);
        assert!(sessions.get(&id, later).is_none(), "ended");
        let (id, _) = sessions.open([7; 32], now);
        sessions.close(&id);
        assert!(sessions.get(&id, now).is_none(), "closed");
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd"));
    }

    #[test]
    fn a_credential_is_handed_out_once_to_its_session_for_its_stream() {
        let sessions = Sessions::default();
        let (id, _) = sessions.open([7; 32], Timestamp::now());
        let handout = |stream: &str| {
            Handout::new(
                stream.into(),
                "Credential of WAU".into(),
                vec![("Key", "k1".into())],
                "wau.kpik".into(),
                ("/console".into(), "Streams".into()),
                "/console/streams/s1/credential".into(),
                SecretString::from("kpik1.secret"),
            )
        };
        sessions.hand_out(&id, handout("s1"));
        assert!(sessions.take_handout("another", "s1").is_none());
        assert!(sessions.take_handout(&id, "s2").is_none());
        assert_eq!(sessions.take_handout(&id, "s1").unwrap().facts[0].1, "k1");
        assert!(sessions.take_handout(&id, "s1").is_none(), "shown once");
        sessions.hand_out(&id, handout("s1"));
        sessions.close(&id);
        assert!(
            sessions.take_handout(&id, "s1").is_none(),
            "gone with the session"
        );
    }

    #[test]
    fn a_session_has_a_bounded_number_of_live_pages() {
        let sessions = Sessions::default();
        assert!(sessions.enter_live("a", 2) && sessions.enter_live("a", 2));
        assert!(!sessions.enter_live("a", 2), "a third is refused");
        assert!(sessions.enter_live("b", 2), "another session has its own");
        sessions.leave_live("a");
        assert!(sessions.enter_live("a", 2), "one closed, one may open");
    }
}
