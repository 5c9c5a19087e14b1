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

/// What a failed call to Telegram says, without its address: Bot API addresses hold
/// the bot's token, which must not reach a delivery's reason, an answer or a log.
pub(crate) fn unreachable(e: reqwest::Error) -> String {
    format!("Telegram could not be reached: {}", e.without_url())
}
