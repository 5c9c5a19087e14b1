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

/// A request path as logs may show it: a Bot API token (`bot<digits>:<secret>`, in
/// the proxy's paths) replaced by `bot***`.
pub fn redact_path(path: &str) -> std::borrow::Cow<'_, str> {
    let is_token = |segment: &str| {
        segment.strip_prefix("bot").is_some_and(|t| {
            t.split_once(':')
                .is_some_and(|(id, _)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    if !path.split('/').any(is_token) {
        return std::borrow::Cow::Borrowed(path);
    }
    let redacted: Vec<&str> = path
        .split('/')
        .map(|segment| if is_token(segment) { "bot***" } else { segment })
        .collect();
    std::borrow::Cow::Owned(redacted.join("/"))
}

/// What a failed call to Telegram says, without its address: Bot API addresses hold
/// the bot's token, which must not reach a delivery's reason, an answer or a log.
pub(crate) fn unreachable(e: reqwest::Error) -> String {
    format!("Telegram could not be reached: {}", e.without_url())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_in_paths_are_hidden() {
        assert_eq!(
            super::redact_path("/channels/telegram/shop/api/bot123456:AAE-secret_x/getUpdates"),
            "/channels/telegram/shop/api/bot***/getUpdates"
        );
        assert_eq!(
            super::redact_path("/api/v1/bots/botany"),
            "/api/v1/bots/botany"
        );
    }
}
