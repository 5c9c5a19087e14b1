//! Telegram, built in (API.md → Telegram, built in): Telegram's webhook in
//! ([`webhook`]: recorded, passed on in Auto, held back in Manual), updates read as
//! events ([`update`]), the Bot API proxy for unchanged bot frameworks ([`proxy`]),
//! operator messages out through the Bot API ([`send`]).

pub mod proxy;
mod send;
pub mod update;
pub mod webhook;

pub use send::{GIVE_UP_AFTER, TelegramSender};

/// The provider name of Telegram users.
pub const PROVIDER: &str = "telegram";
