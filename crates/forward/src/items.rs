//! Events of the log as the items analytics services are told about.

use botwatch_event::{Direction, Event, EventKind, Mode, Sender};

/// What happened, as forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A user wrote to the bot.
    MessageIn,
    /// The bot, or an operator for it, wrote to a user.
    MessageOut { by_operator: bool },
    /// A user's first message ever.
    NewUser,
    /// A user's message that starts a session (PRODUCT.md → Definitions).
    SessionStart,
    /// An operator switched a dialog to Manual.
    OperatorTakeover,
}

impl ItemKind {
    /// The event name both services get: letters, digits and underscores, starting
    /// with a letter, at most 40 characters (GA4's rule), and none of GA4's reserved
    /// names (`session_start`, `first_visit`, … are GA's own).
    pub fn name(self) -> &'static str {
        match self {
            ItemKind::MessageIn => "bot_message_in",
            ItemKind::MessageOut { .. } => "bot_message_out",
            ItemKind::NewUser => "bot_new_user",
            ItemKind::SessionStart => "bot_session_start",
            ItemKind::OperatorTakeover => "bot_operator_takeover",
        }
    }

    /// A short stable tag of the kind, part of an item's own id.
    fn tag(self) -> &'static str {
        match self {
            ItemKind::MessageIn => "in",
            ItemKind::MessageOut { .. } => "out",
            ItemKind::NewUser => "new",
            ItemKind::SessionStart => "session",
            ItemKind::OperatorTakeover => "takeover",
        }
    }
}

/// One thing a service is told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub kind: ItemKind,
    pub bot: String,
    pub user: String,
    pub provider: String,
    /// The log event it comes from.
    pub event_id: String,
    /// Event time, ms since the epoch.
    pub ms: i64,
    /// When the user's session that holds it started (ms), when known.
    pub session_ms: Option<i64>,
}

impl Item {
    /// This item's own id, the same on every node and every try: the event's id and
    /// the kind (one event may give several items).
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.bot, self.event_id, self.kind.tag())
    }
}

/// What the figures know of an event's place, which the event alone does not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// The event is its user's first message ever.
    pub first_message: bool,
    /// The event is the first message of a session.
    pub starts_session: bool,
    /// When the session that holds the event started (ms).
    pub session_ms: Option<i64>,
}

/// The items an event gives: a new user and a session start before the message that
/// makes them, an operator's takeover for a switch to Manual, nothing for the rest
/// (profile updates, deliveries, audience edits, broadcasts themselves).
pub fn items_of(event: &Event, facts: &Facts) -> Vec<Item> {
    let item = |kind| Item {
        kind,
        bot: event.bot.clone(),
        user: event.user.id.clone(),
        provider: event.provider.clone(),
        event_id: event.id.clone(),
        ms: event.ts_millis(),
        session_ms: facts.session_ms,
    };
    match (event.kind, event.direction) {
        (EventKind::Message, Some(Direction::In)) => {
            let mut items = Vec::with_capacity(3);
            if facts.first_message {
                items.push(item(ItemKind::NewUser));
            }
            if facts.starts_session {
                items.push(item(ItemKind::SessionStart));
            }
            items.push(item(ItemKind::MessageIn));
            items
        }
        (EventKind::Message, Some(Direction::Out)) => {
            let by_operator = matches!(event.sender, Some(Sender::Operator { .. }));
            vec![item(ItemKind::MessageOut { by_operator })]
        }
        (EventKind::ModeChanged, _) if event.mode == Some(Mode::Manual) => {
            vec![item(ItemKind::OperatorTakeover)]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(direction: Direction) -> Event {
        let mut e = Event::about_dialog(
            "e1".to_owned(),
            EventKind::Message,
            "shop",
            "telegram",
            "u1",
        );
        e.direction = Some(direction);
        e.text = Some("my card number is 4111…".to_owned());
        e
    }

    #[test]
    fn a_first_message_is_a_new_user_and_a_session_start_first() {
        let facts = Facts {
            first_message: true,
            starts_session: true,
            session_ms: Some(5),
        };
        let kinds: Vec<ItemKind> = items_of(&message(Direction::In), &facts)
            .into_iter()
            .map(|i| i.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                ItemKind::NewUser,
                ItemKind::SessionStart,
                ItemKind::MessageIn
            ]
        );
        let kinds: Vec<ItemKind> = items_of(&message(Direction::In), &Facts::default())
            .into_iter()
            .map(|i| i.kind)
            .collect();
        assert_eq!(kinds, [ItemKind::MessageIn]);
    }

    #[test]
    fn outbound_takeovers_and_the_rest() {
        let mut out = message(Direction::Out);
        out.sender = Some(Sender::Operator {
            id: "user:anna".to_owned(),
        });
        assert_eq!(
            items_of(&out, &Facts::default())[0].kind,
            ItemKind::MessageOut { by_operator: true }
        );
        let mut switch = Event::about_dialog(
            "m1".to_owned(),
            EventKind::ModeChanged,
            "shop",
            "telegram",
            "u1",
        );
        switch.mode = Some(Mode::Manual);
        assert_eq!(
            items_of(&switch, &Facts::default())[0].kind,
            ItemKind::OperatorTakeover
        );
        switch.mode = Some(Mode::Auto);
        assert!(
            items_of(&switch, &Facts::default()).is_empty(),
            "handing back is no takeover"
        );
        let profile =
            Event::about_dialog("p1".to_owned(), EventKind::User, "shop", "telegram", "u1");
        assert!(items_of(&profile, &Facts::default()).is_empty());
    }

    #[test]
    fn names_keep_to_ga4s_rules() {
        for kind in [
            ItemKind::MessageIn,
            ItemKind::MessageOut { by_operator: false },
            ItemKind::NewUser,
            ItemKind::SessionStart,
            ItemKind::OperatorTakeover,
        ] {
            let name = kind.name();
            assert!(name.len() <= 40 && name.starts_with(|c: char| c.is_ascii_alphabetic()));
            assert!(
                name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{name}"
            );
            assert!(
                ![
                    "session_start",
                    "first_visit",
                    "user_engagement",
                    "first_open"
                ]
                .contains(&name)
            );
        }
    }
}
