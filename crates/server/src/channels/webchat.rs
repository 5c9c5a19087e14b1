//! The web chat botwatch serves itself: its users read their dialog from botwatch, so
//! an operator's message is delivered once it is stored.

use super::{Channel, Outgoing, Undelivered};
use crate::AppState;

/// The provider name of web chat users.
pub const PROVIDER: &str = "webchat";

pub struct WebChatChannel;

impl Channel for WebChatChannel {
    async fn deliver(&self, _state: &AppState, _message: &Outgoing) -> Result<(), Undelivered> {
        Ok(())
    }
}
