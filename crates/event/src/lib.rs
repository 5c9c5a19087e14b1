//! The botwatch event, version 1: the one shape in which every message and profile
//! update enters the system, and the rules that decide whether an event is valid.
//!
//! This crate does no IO. [`parse_batch`] turns the body of an ingest request into
//! events or into a list of every field at fault; [`parse_event`] does the same for
//! one event (an entry written straight into Redis). What is stored is the canonical
//! form of [`Event`] (server-made `id` and `ts` filled in, times in UTC with
//! millisecond precision), so every reader sees exactly what was acknowledged.

pub mod audience;
#[doc(hidden)]
pub mod fuzzing;
mod model;
mod validate;

pub use model::{
    Attachment, AudienceChange, BroadcastInfo, BroadcastState, Button, Card, Delivery,
    DeliveryState, Direction, Event, EventKind, Label, LabelOf, Media, Mode, Sender, UserEdit,
    UserInfo,
};
pub use validate::schema;
pub use validate::{
    BatchError, FieldError, Limits, Problem, is_slug, parse_batch, parse_event, parse_event_value,
    parse_event_with_id,
};
