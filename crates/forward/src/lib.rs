//! What botwatch forwards to analytics services, and in what shape (issue 9).
//!
//! [`items_of`] turns an event of the log into what a service is told — a message in or
//! out, a new user, the start of a session, an operator taking a dialog over — given
//! what the figures know of the event's place ([`Facts`]). [`ga`] and [`mixpanel`] put
//! those items into each service's requests, within its limits. Nothing here does IO:
//! the forwarding worker (the server) reads the log, asks the figures, sends, retries
//! and keeps its position.
//!
//! What is never forwarded: the text of messages, names, or anything a user wrote;
//! users are known to the services by a pseudonymous id (GA4) or the bot's own user id
//! (Mixpanel, as the issue asks), never by name.

pub mod ga;
mod items;
pub mod mixpanel;

pub use items::{Facts, Item, ItemKind, items_of};

/// Hex of SHA-256 over `parts` joined by `:` (stable across nodes and versions).
pub(crate) fn digest(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (n, part) in parts.iter().enumerate() {
        if n > 0 {
            h.update(b":");
        }
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
