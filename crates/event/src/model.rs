use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One event in its canonical, validated form: what the log stores and readers get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Idempotency key, unique per bot: the same `(bot, id)` is counted once.
    pub id: String,
    pub bot: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    pub provider: String,
    pub user: UserInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Sender>,
    /// The dialog's new mode: on `mode_changed` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// An operator message's delivery: `pending` on the message botwatch writes when
    /// an operator sends it, the outcome (and the message it is of) on `delivery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// What an `audience` event changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<AudienceChange>,
    /// What a `broadcast` event starts or cancels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<BroadcastInfo>,
    /// Event time, UTC, millisecond precision (RFC 3339); the time of receipt when absent.
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "ts_to_rfc3339", deserialize_with = "ts_from_rfc3339")]
    pub ts: DateTime<Utc>,
}

impl Event {
    /// An event botwatch writes itself about a dialog (a mode switch, a delivery's
    /// outcome, a hand-off), now: no message fields; the caller sets what its kind
    /// carries.
    pub fn about_dialog(
        id: String,
        kind: EventKind,
        bot: &str,
        provider: &str,
        user: &str,
    ) -> Event {
        Event {
            id,
            bot: bot.to_owned(),
            kind,
            direction: None,
            provider: provider.to_owned(),
            user: UserInfo {
                id: user.to_owned(),
                ..UserInfo::default()
            },
            text: None,
            attachments: Vec::new(),
            sender: None,
            mode: None,
            delivery: None,
            audience: None,
            broadcast: None,
            ts: Utc::now(),
        }
    }

    /// Whether only botwatch may write this event: its own kinds, and an operator
    /// message's `delivery`.
    pub fn is_botwatchs_own(&self) -> bool {
        !matches!(self.kind, EventKind::Message | EventKind::User) || self.delivery.is_some()
    }

    /// Whether this event is about the bot as a whole (a role or tag, a broadcast)
    /// rather than one of its users: its `user.id` is empty and it makes no user.
    pub fn is_about_bot(&self) -> bool {
        match self.kind {
            EventKind::Broadcast => true,
            EventKind::Audience => matches!(self.audience, Some(AudienceChange::Label(_))),
            _ => false,
        }
    }

    /// Event time in milliseconds since the Unix epoch (the history index orders by it).
    pub fn ts_millis(&self) -> i64 {
        self.ts.timestamp_millis()
    }

    /// The canonical JSON of this event: the bytes the log stores.
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings, numbers and enums cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A message between a user and the bot (or an operator speaking for it).
    Message,
    /// A profile upsert: the fields of `user`, without a message.
    User,
    /// An operator switched the dialog with `user` to `mode`. Written by botwatch itself
    /// (`PUT …/dialogs/{user}/mode`), never accepted from an ingest request.
    ModeChanged,
    /// The outcome of delivering an operator message (`delivery.message`) to the user.
    /// Written by botwatch itself.
    Delivery,
    /// The user asks for a human (a hand-off phrase in Auto), or the bot handed the
    /// dialog off through the API: the dialog is flagged for operators until one takes
    /// it over. `text` says why. Written by botwatch itself.
    Handoff,
    /// An operator changed the audience: one user's record (`audience.op` `edit`), or
    /// one of the bot's roles or tags (`label`, an event about no user). Written by
    /// botwatch itself.
    Audience,
    /// A broadcast was started (`queued`) or cancelled: an event about no user; the
    /// message is its `text` and `attachments`. Written by botwatch itself.
    Broadcast,
}

impl EventKind {
    /// The kinds bots and adapters may send.
    pub const ALL: [(&'static str, EventKind); 2] =
        [("message", EventKind::Message), ("user", EventKind::User)];
}

/// Who answers a user: the bot (auto) or an operator (manual).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Auto,
    Manual,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Manual => "manual",
        }
    }
}

/// Where an operator message is on its way to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    /// On `delivery` events: the id of the operator message this is the outcome of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub state: DeliveryState,
    /// Why it failed (or was skipped), in words an operator can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The broadcast this message is part of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Sent,
    Failed,
    /// Not sent, on purpose: a broadcast skips users in Manual mode.
    Skipped,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
            DeliveryState::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// User → bot.
    In,
    /// Bot or operator → user.
    Out,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
}

/// Who wrote an outbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sender {
    Bot,
    Operator { id: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Attachment {
    File(Media),
    Image(Media),
    Audio(Media),
    Video(Media),
    Card(Card),
}

impl Attachment {
    pub const TYPES: [&'static str; 5] = ["file", "image", "audio", "video", "card"];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Media {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Card {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Button {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// An operator's change to the audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AudienceChange {
    /// The event's user's record: every field present is set.
    Edit(UserEdit),
    /// A role or tag of the bot defined, renamed (its key, a new name) or deleted
    /// (no name).
    Label(Label),
}

/// What an operator set on one user; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserEdit {
    /// Stands over the name channels send; empty: channels' names again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Stands over the gender channels send; empty: channels' again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// A role's key; empty: no role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<bool>,
    /// Tags' keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_tags: Vec<String>,
    /// Information fields (phone, e-mail, custom ones); an empty value removes one.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub fields: std::collections::BTreeMap<String, String>,
}

/// A role or a tag: per bot, named by operators, known by a key that never changes
/// (so a rename is one event, not one per user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Label {
    pub of: LabelOf,
    pub key: String,
    /// Absent: deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelOf {
    Role,
    Tag,
}

/// A broadcast started or cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BroadcastInfo {
    pub id: String,
    pub state: BroadcastState,
    /// Recipients chosen when it started.
    #[serde(default)]
    pub total: u64,
    /// `subscribers` or `all`, and the filter, as the operator chose them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The account that started or cancelled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastState {
    Queued,
    Running,
    Done,
    Cancelled,
}

impl BroadcastState {
    pub fn as_str(self) -> &'static str {
        match self {
            BroadcastState::Queued => "queued",
            BroadcastState::Running => "running",
            BroadcastState::Done => "done",
            BroadcastState::Cancelled => "cancelled",
        }
    }
}

fn ts_to_rfc3339<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn ts_from_rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(serde::de::Error::custom)
}
