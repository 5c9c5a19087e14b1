//! Telegram, built in (API.md → Telegram, built in): operator messages out through the
//! Bot API ([`send`]).

mod send;

pub use send::{GIVE_UP_AFTER, TelegramSender};

/// The provider name of Telegram users.
pub const PROVIDER: &str = "telegram";
