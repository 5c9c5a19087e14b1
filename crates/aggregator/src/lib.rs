//! The aggregator's figures: everything the product shows about a bot, kept exact as
//! each event is applied, in any order. A figure that differs from a recount of the
//! log is a bug (PRODUCT.md → Definitions).
//!
//! [`BotFigures`] is one bot's state, changed by [`BotFigures::apply`] and read by the
//! query methods; [`AggregatorHandle`] runs the one task that owns all bots' figures.
//! Order independence comes from keeping only structures whose final state does not
//! depend on the order of insertion: session groups as sorted intervals, counters per
//! 15-minute UTC slot (every time zone's hours, days and weeks are unions of those),
//! and, for distinct active users, each user's set of active local hours.
//!
//! Memory: a user is a fixed 80-byte record whose strings live in the bot's
//! [`arena`] and whose session groups and active hours are packed in a [`timeline`];
//! the users table and dialogs list are answered by one scan (see [`users`]).

mod arena;
mod audience;
mod bot;
mod broadcasts;
#[doc(hidden)]
pub mod fuzzing;
mod names;
mod outbox;
mod sessions;
mod task;
mod text;
mod time;
mod timeline;
mod users;

pub use audience::LabelInfo;
pub use bot::{
    BotFigures, BotSettings, DialogCursor, Handoff, MessagePlace, StatsBucket, UserFigures,
};
pub use broadcasts::BroadcastFigures;
pub use names::fold_name;
pub use outbox::PendingMessage;
pub use sessions::Group;
pub use task::{Aggregator, AggregatorHandle, OnApplied, SNAPSHOT_SCHEMA, SnapshotError, Stopped};
pub use text::normalize_top_text;
pub use time::{BucketSize, SLOT_MS};
pub use users::{CursorKey, Facets, Mode, UserCursor, UserFilter, UserSort, UsersPage, UsersQuery};
