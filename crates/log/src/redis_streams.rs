//! The Redis backend: the stream `{prefix}events` (by default `botwatch:events`).
//!
//! Keys (prefix `botwatch:` unless configured):
//! - `events`: the log; each entry has the field `event` (event JSON).
//! - `events:dead`: entries that are not valid events, with the reason.
//! - `dedup:{bot}:{window}`: hash, event id → who owns it: `+` when botwatch wrote
//!   it, else the stream id of the adapter's entry that claimed it.
//! - `history:{bot}`: sorted set, all scores 0, one member per message: dialog,
//!   event ms and stream id (see `member`).
//! - `deadmark:{stream id}`: set once an entry has been dead-lettered.
//!
//! Writes by botwatch go through one Lua script per batch (dedup claim, `XADD` with
//! the mark `botwatch=admitted`, history index), so a retried event is never stored
//! twice and readers take marked entries without asking Redis again. Entries that
//! adapters `XADD` themselves are validated when read: every reader runs the admit
//! script on what it read, which claims the event id for the first entry that has it
//! (the same answer for every reader, on every node, after every restart), indexes it,
//! and dead-letters invalid entries exactly once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use botwatch_event::{Event, EventKind, Limits, parse_event_value};
use chrono::{DateTime, SecondsFormat, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use tracing::{info, instrument, warn};

use crate::{
    AppendReceipt, EventLog, HistoryCursor, HistoryPage, LogEntry, LogError, LogStats, Position,
    ReadBatch,
};

/// How to reach Redis and name the keys.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
    /// Prefix of every key; `botwatch:` in production (API.md names `botwatch:events`).
    pub prefix: String,
    /// Event ids are remembered per window of this length: a retry within one window
    /// of the first delivery is always recognised (within two, usually).
    pub dedup_window: Duration,
    /// How long one command may take before Redis counts as unavailable.
    pub response_timeout: Duration,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            prefix: "botwatch:".to_owned(),
            dedup_window: Duration::from_secs(15 * 24 * 3600),
            response_timeout: Duration::from_secs(2),
        }
    }
}

/// `pad(sid)`: a stream id as 25 fixed-width digits (15 for the milliseconds, 10 for
/// the sequence), so that history members sort like positions.
const LUA_PAD: &str = r#"
local function pad(sid)
  local ms, sq = string.match(sid, '^(%d+)-(%d+)$')
  return string.rep('0', 15 - #ms) .. ms .. string.rep('0', 10 - #sq) .. sq
end
"#;

/// KEYS[1] = events; ARGV = prefix, dedup window number, window ttl, then
/// (bot, id, history member prefix or '' when not indexed, json) per event.
/// Returns per event the new stream id, or 0 when the id was already taken.
///
/// Event ids are remembered in one hash per bot and dedup window
/// (`dedup:{bot}:{window}`); the current and the previous window are checked, so an id
/// is remembered for at least one window. Everything but the `XADD` is done in bulk
/// (an HMGET per window and bot, one HSET and one ZADD per bot), because each call
/// from Lua costs about as much as the work it does.
///
/// Entries written here carry the field `botwatch` = `admitted`: they were validated
/// and de-duplicated before they were added, so readers take them as they are.
const LUA_INGEST: &str = r#"
local prefix, window, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local n = (#ARGV - 3) / 4
local bots = {}
for i = 0, n - 1 do
  local b = 4 + i * 4
  local ids = bots[ARGV[b]]
  if not ids then ids = {}; bots[ARGV[b]] = ids end
  ids[#ids + 1] = ARGV[b + 1]
end
local taken = {}
for bot, ids in pairs(bots) do
  local t = {}
  taken[bot] = t
  for w = window - 1, window do
    local found = redis.call('HMGET', prefix .. 'dedup:' .. bot .. ':' .. w, unpack(ids))
    for j = 1, #ids do
      if found[j] then t[ids[j]] = true end
    end
  end
end
local out, fresh, members = {}, {}, {}
for i = 0, n - 1 do
  local b = 4 + i * 4
  local bot, id, member = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local t = taken[bot]
  if t[id] then
    out[i + 1] = 0
  else
    t[id] = true
    local sid = redis.call('XADD', KEYS[1], '*', 'event', ARGV[b + 3], 'botwatch', 'admitted')
    out[i + 1] = sid
    local f = fresh[bot]
    if not f then f = {}; fresh[bot] = f; members[bot] = {} end
    f[#f + 1] = id
    f[#f + 1] = '+'
    if member ~= '' then
      local m = members[bot]
      m[#m + 1] = 0
      m[#m + 1] = member .. pad(sid)
    end
  end
end
for bot, f in pairs(fresh) do
  local key = prefix .. 'dedup:' .. bot .. ':' .. window
  redis.call('HSET', key, unpack(f))
  redis.call('EXPIRE', key, ttl)
  if #members[bot] > 0 then
    redis.call('ZADD', prefix .. 'history:' .. bot, unpack(members[bot]))
  end
end
return out
"#;

/// KEYS[1] = dead-letter stream; ARGV = prefix, ttl, then seven values per entry read:
/// ('v', stream id, dedup window, bot, id, history member prefix or '', '') for a
/// valid event, or ('x', stream id, '', reason, raw, '', '') for an invalid one.
/// Returns per entry 1 (counts), 0 (duplicate of an earlier entry), 2 (dead-lettered).
/// An adapter's entry claims its id with its own stream id as the owner, so every
/// reader, now or in a replay, finds the same owner.
const LUA_ADMIT: &str = r#"
local prefix, ttl = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV, 7 do
  local tag, sid = ARGV[i], ARGV[i+1]
  if tag == 'v' then
    local window, bot, id, member = tonumber(ARGV[i+2]), ARGV[i+3], ARGV[i+4], ARGV[i+5]
    local key = prefix .. 'dedup:' .. bot .. ':' .. window
    local owner = redis.call('HGET', key, id) or
      redis.call('HGET', prefix .. 'dedup:' .. bot .. ':' .. (window - 1), id)
    if owner == sid then
      out[#out+1] = 1
    elseif owner then
      out[#out+1] = 0
    else
      redis.call('HSET', key, id, sid)
      redis.call('EXPIRE', key, ttl)
      if member ~= '' then
        redis.call('ZADD', prefix .. 'history:' .. bot, 0, member .. pad(sid))
      end
      out[#out+1] = 1
    end
  else
    if redis.call('SET', prefix .. 'deadmark:' .. sid, '1', 'NX', 'EX', ttl) then
      redis.call('XADD', KEYS[1], '*', 'id', sid, 'reason', ARGV[i+3], 'event', ARGV[i+4])
    end
    out[#out+1] = 2
  end
end
return out
"#;

/// KEYS[1] = the bot's history set, KEYS[2] = events; ARGV = the dialog's member
/// prefix, the exclusive upper bound (a cursor's member, or '' for the newest), limit.
/// Returns {member, fields or false} newest first.
const LUA_HISTORY: &str = r#"
local prefix, limit = ARGV[1], tonumber(ARGV[3])
local max = ARGV[2] ~= '' and ('(' .. ARGV[2]) or ('[' .. prefix .. '~')
local rows = redis.call('ZRANGE', KEYS[1], max, '[' .. prefix, 'BYLEX', 'REV', 'LIMIT', 0, limit)
local out = {}
for i = 1, #rows do
  local t = string.sub(rows[i], #prefix + 16)
  local ms = string.match(string.sub(t, 1, 15), '^0*(%d+)$')
  local sq = string.match(string.sub(t, 16), '^0*(%d+)$')
  local e = redis.call('XRANGE', KEYS[2], ms .. '-' .. sq, ms .. '-' .. sq)
  out[#out+1] = {rows[i], e[1] and e[1][2] or false}
end
return out
"#;

struct Scripts {
    ingest: Script,
    admit: Script,
    history: Script,
}

/// The Redis Streams event log. Cheap to clone.
#[derive(Clone)]
pub struct RedisLog {
    config: RedisConfig,
    /// Commands that answer at once (multiplexed, reconnects by itself).
    con: ConnectionManager,
    /// Blocking reads only, so they never hold up other commands.
    blocking: ConnectionManager,
    events_key: String,
    dead_key: String,
    scripts: std::sync::Arc<Scripts>,
}

impl RedisLog {
    /// Connects to Redis; fails with a clear error when it does not answer.
    pub async fn connect(config: RedisConfig) -> Result<RedisLog, LogError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| LogError::Redis(format!("bad Redis URL {:?}: {e}", config.url)))?;
        let manager_config = |response_timeout: Duration| {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(response_timeout))
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_secs(2))
                .set_number_of_retries(2)
        };
        let unreachable = |e: redis::RedisError| {
            LogError::Unavailable(format!("cannot reach Redis at {}: {e}", config.url))
        };
        let con = client
            .get_connection_manager_with_config(manager_config(config.response_timeout))
            .await
            .map_err(unreachable)?;
        // A blocking read waits at most `MAX_BLOCK`; its own timeout leaves room for that.
        let blocking = client
            .get_connection_manager_with_config(manager_config(MAX_BLOCK + config.response_timeout))
            .await
            .map_err(unreachable)?;
        let pad_then = |body: &str| Script::new(&format!("{LUA_PAD}{body}"));
        let log = RedisLog {
            events_key: format!("{}events", config.prefix),
            dead_key: format!("{}events:dead", config.prefix),
            scripts: std::sync::Arc::new(Scripts {
                ingest: pad_then(LUA_INGEST),
                admit: pad_then(LUA_ADMIT),
                history: Script::new(LUA_HISTORY),
            }),
            con,
            blocking,
            config,
        };
        log.ready().await?;
        info!(url = %redact(&log.config.url), stream = %log.events_key, "redis event log connected");
        Ok(log)
    }

    /// The stream key (`botwatch:events` by default).
    pub fn events_key(&self) -> &str {
        &self.events_key
    }

    /// The dead-letter stream key (`botwatch:events:dead` by default).
    pub fn dead_key(&self) -> &str {
        &self.dead_key
    }

    /// How long a dedup window's hash (and a dead-letter mark) is kept.
    fn ttl_secs(&self) -> u64 {
        2 * self.config.dedup_window.as_secs().max(1) + 3600
    }

    fn window_of(&self, ms: u64) -> u64 {
        ms / 1000 / self.config.dedup_window.as_secs().max(1)
    }
}

/// Events per ingest script call (Lua's `unpack` takes a few thousand values).
const MAX_SCRIPT_EVENTS: usize = 1_000;

/// The longest a blocking read waits in one command.
const MAX_BLOCK: Duration = Duration::from_secs(5);

/// A Redis URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// History members: `{user length:04}{user}` (the dialog), `{event ms:015}`, then the
/// position `{stream ms:015}{stream seq:010}`. All scores are 0, so the set sorts by
/// member: by dialog, then event time, then position; one dialog is one range.
fn dialog_prefix(user: &str) -> String {
    format!("{:04}{user}", user.len())
}

fn member(user: &str, ts_ms: i64, p: Position) -> String {
    format!(
        "{}{:015}{:015}{:010}",
        dialog_prefix(user),
        ts_ms.max(0),
        p.ms,
        p.seq
    )
}

/// The event time and position at the end of a history member.
fn parse_member_tail(member: &str, user: &str) -> Option<(i64, Position)> {
    let tail = member.get(dialog_prefix(user).len()..)?;
    if tail.len() != 40 {
        return None;
    }
    Some((
        tail[..15].parse().ok()?,
        Position::new(tail[15..30].parse().ok()?, tail[30..].parse().ok()?),
    ))
}

/// What botwatch knows of an event's history member before its `XADD`, or "" when
/// the event is not a message (not in any dialog's history).
fn history_member_prefix(e: &Event) -> String {
    if e.kind == EventKind::Message {
        format!("{}{:015}", dialog_prefix(&e.user.id), e.ts_millis().max(0))
    } else {
        String::new()
    }
}

fn time_of(p: Position) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(p.ms as i64).unwrap_or_default()
}

/// What a stream entry holds, decided the same way by every reader.
enum Decoded {
    /// Written by botwatch's ingest script: validated and de-duplicated already.
    Admitted(Event),
    /// Written by an adapter: a valid event whose id still has to be claimed.
    Unclaimed(Event),
    /// Not a valid event: the reason and the raw bytes, for the dead-letter stream.
    Invalid(String, Vec<u8>),
}

fn field<'a>(fields: &'a [Value], name: &[u8]) -> Option<&'a Vec<u8>> {
    fields.chunks(2).find_map(|kv| match kv {
        [Value::BulkString(k), Value::BulkString(v)] if k.as_slice() == name => Some(v),
        _ => None,
    })
}

/// Decodes one stream entry. For adapters' entries, missing `id` and `ts` are taken
/// from the stream id, and validation uses the entry's own append time as "now", so
/// the answer never depends on when or where it is read.
fn decode_fields(position: Position, fields: Option<&[Value]>) -> Decoded {
    let Some(fields) = fields else {
        return Decoded::Invalid(
            "the entry has no fields (deleted or trimmed)".to_owned(),
            Vec::new(),
        );
    };
    let Some(raw) = field(fields, b"event") else {
        return Decoded::Invalid("the entry has no field \"event\"".to_owned(), Vec::new());
    };
    // A marked entry not in the canonical form is validated like any other entry.
    if field(fields, b"botwatch").is_some_and(|v| v.as_slice() == b"admitted")
        && let Ok(event) = serde_json::from_slice::<Event>(raw)
    {
        return Decoded::Admitted(event);
    }
    let limits = Limits::default();
    if raw.len() > limits.max_event_bytes {
        return Decoded::Invalid(
            format!(
                "event is {} bytes; at most {}",
                raw.len(),
                limits.max_event_bytes
            ),
            raw.clone(),
        );
    }
    let mut value: serde_json::Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => {
            return Decoded::Invalid(format!("the event is not valid JSON: {e}"), raw.clone());
        }
    };
    if let serde_json::Value::Object(obj) = &mut value {
        if obj.get("id").is_none_or(|v| v.is_null()) {
            obj.insert("id".to_owned(), format!("redis-{position}").into());
        }
        if obj.get("ts").is_none_or(|v| v.is_null()) {
            let ts = time_of(position).to_rfc3339_opts(SecondsFormat::Millis, true);
            obj.insert("ts".to_owned(), ts.into());
        }
    }
    match parse_event_value(value, 0, time_of(position), &limits) {
        Ok(event) => Decoded::Unclaimed(event),
        Err(faults) => {
            let reason = faults
                .iter()
                .map(|f| match &f.field {
                    Some(field) => format!("{field}: {}", f.reason),
                    None => f.reason.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ");
            Decoded::Invalid(reason, raw.clone())
        }
    }
}

fn bulk_str(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn protocol(what: &str) -> LogError {
    LogError::Redis(format!("unexpected reply shape: {what}"))
}

/// Entries of an `XREAD` reply for one stream: (position, fields or None when nil).
/// A stream entry as read: its position and its fields (`None` when nil).
type RawEntry = (Position, Option<Vec<Value>>);

fn xread_entries(reply: Value) -> Result<Vec<RawEntry>, LogError> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(s) => s,
        Value::Map(m) => m
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => return Err(protocol("XREAD")),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(mut pair) = stream else {
            return Err(protocol("XREAD stream"));
        };
        let Some(Value::Array(entries)) = pair.pop() else {
            return Err(protocol("XREAD entries"));
        };
        for entry in entries {
            let Value::Array(mut parts) = entry else {
                return Err(protocol("XREAD entry"));
            };
            let fields = match parts.pop() {
                Some(Value::Array(f)) => Some(f),
                _ => None,
            };
            let id = parts
                .first()
                .and_then(bulk_str)
                .and_then(|s| s.parse::<Position>().ok())
                .ok_or_else(|| protocol("XREAD entry id"))?;
            out.push((id, fields));
        }
    }
    Ok(out)
}

impl EventLog for RedisLog {
    #[instrument(name = "log.append", skip_all, fields(backend = "redis", events = events.len()))]
    async fn append(&self, events: Vec<Event>) -> Result<AppendReceipt, LogError> {
        if events.is_empty() {
            return Ok(AppendReceipt::default());
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut receipt = AppendReceipt::default();
        // One script call per chunk keeps every call's arguments within Lua's limits.
        // Should a later chunk fail, the client's retry of the whole batch is safe:
        // the ids of the chunks already stored are remembered.
        for chunk in events.chunks(MAX_SCRIPT_EVENTS) {
            let mut inv = self.scripts.ingest.prepare_invoke();
            inv.key(&self.events_key)
                .arg(&self.config.prefix)
                .arg(self.window_of(now_ms))
                .arg(self.ttl_secs());
            for e in chunk {
                inv.arg(&e.bot)
                    .arg(&e.id)
                    .arg(history_member_prefix(e))
                    .arg(e.to_json());
            }
            let reply: Vec<Value> = inv.invoke_async(&mut self.con.clone()).await?;
            for v in reply {
                match v {
                    Value::Int(0) => receipt.duplicates += 1,
                    _ => receipt.stored += 1,
                }
            }
        }
        Ok(receipt)
    }

    #[instrument(name = "log.read", skip_all, fields(backend = "redis", %after))]
    async fn read(
        &self,
        after: Position,
        max: usize,
        wait: Option<Duration>,
    ) -> Result<ReadBatch, LogError> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(max.max(1));
        let mut con = match wait {
            Some(wait) => {
                let ms = wait.min(MAX_BLOCK).as_millis().max(1) as u64;
                cmd.arg("BLOCK").arg(ms);
                self.blocking.clone()
            }
            None => self.con.clone(),
        };
        cmd.arg("STREAMS")
            .arg(&self.events_key)
            .arg(after.to_string());
        let reply: Value = cmd.query_async(&mut con).await?;
        let raw = xread_entries(reply)?;

        let mut batch = ReadBatch {
            next: raw.last().map(|(p, _)| *p).unwrap_or(after),
            ..ReadBatch::default()
        };
        if raw.is_empty() {
            return Ok(batch);
        }
        // Marked entries count as they are; the others are claimed or dead-lettered
        // by the admit script, in one round trip for the whole batch.
        let mut decoded = Vec::with_capacity(raw.len());
        let mut admit = self.scripts.admit.prepare_invoke();
        admit
            .key(&self.dead_key)
            .arg(&self.config.prefix)
            .arg(self.ttl_secs());
        let mut to_admit = 0;
        for (position, fields) in &raw {
            let d = decode_fields(*position, fields.as_deref());
            match &d {
                Decoded::Admitted(_) => {}
                Decoded::Unclaimed(event) => {
                    to_admit += 1;
                    admit
                        .arg("v")
                        .arg(position.to_string())
                        .arg(self.window_of(position.ms))
                        .arg(&event.bot)
                        .arg(&event.id)
                        .arg(history_member_prefix(event))
                        .arg("");
                }
                Decoded::Invalid(reason, bytes) => {
                    to_admit += 1;
                    warn!(position = %position, %reason, "invalid entry in the event stream; dead-lettered");
                    admit
                        .arg("x")
                        .arg(position.to_string())
                        .arg("")
                        .arg(reason)
                        .arg(bytes)
                        .arg("")
                        .arg("");
                }
            }
            decoded.push((*position, d));
        }
        let mut verdicts = Vec::new();
        if to_admit > 0 {
            verdicts = admit
                .invoke_async::<Vec<i64>>(&mut self.con.clone())
                .await?;
            if verdicts.len() != to_admit {
                return Err(protocol("admit verdicts"));
            }
        }
        let mut verdicts = verdicts.into_iter();
        for (position, d) in decoded {
            match d {
                Decoded::Admitted(event) => batch.entries.push(LogEntry { position, event }),
                Decoded::Unclaimed(event) => match verdicts.next() {
                    Some(1) => batch.entries.push(LogEntry { position, event }),
                    _ => batch.duplicates += 1,
                },
                Decoded::Invalid(..) => {
                    verdicts.next();
                    batch.dead_lettered += 1;
                }
            }
        }
        Ok(batch)
    }

    #[instrument(name = "log.history", skip_all, fields(backend = "redis", bot, user))]
    async fn history(
        &self,
        bot: &str,
        user: &str,
        before: Option<HistoryCursor>,
        limit: usize,
    ) -> Result<HistoryPage, LogError> {
        let limit = limit.max(1);
        let key = format!("{}history:{bot}", self.config.prefix);
        let upper = before
            .map(|c| member(user, c.ts_ms, c.position))
            .unwrap_or_default();
        let rows: Vec<Value> = self
            .scripts
            .history
            .key(&key)
            .key(&self.events_key)
            .arg(dialog_prefix(user))
            .arg(upper)
            .arg(limit)
            .invoke_async(&mut self.con.clone())
            .await?;
        let mut page = HistoryPage::default();
        for row in &rows {
            let Value::Array(parts) = row else {
                return Err(protocol("history row"));
            };
            let (ts_ms, position) = parts
                .first()
                .and_then(bulk_str)
                .and_then(|m| parse_member_tail(m, user))
                .ok_or_else(|| protocol("history member"))?;
            let fields = match parts.get(1) {
                Some(Value::Array(f)) => Some(f.as_slice()),
                _ => None,
            };
            match decode_fields(position, fields) {
                Decoded::Admitted(event) | Decoded::Unclaimed(event) => {
                    page.entries.push(LogEntry { position, event })
                }
                // Indexed but gone from the stream (trimmed): nothing left to show.
                Decoded::Invalid(reason, _) => {
                    warn!(%position, %reason, "history entry no longer readable")
                }
            }
            page.next = Some(HistoryCursor { ts_ms, position });
        }
        if rows.len() < limit {
            page.next = None;
        }
        Ok(page)
    }

    async fn stats(&self) -> Result<LogStats, LogError> {
        let (length, last): (u64, Value) = redis::pipe()
            .cmd("XLEN")
            .arg(&self.events_key)
            .cmd("XREVRANGE")
            .arg(&self.events_key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.con.clone())
            .await?;
        let head = xread_entries(Value::Array(vec![Value::Array(vec![Value::Nil, last])]))?
            .first()
            .map(|(p, _)| *p)
            .unwrap_or(Position::START);
        Ok(LogStats { length, head })
    }

    async fn ready(&self) -> Result<(), LogError> {
        let mut con = self.con.clone();
        let ping = redis::cmd("PING");
        let ping = ping.query_async::<String>(&mut con);
        match tokio::time::timeout(self.config.response_timeout, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(LogError::Unavailable(format!("redis: {e}"))),
            Err(_) => Err(LogError::Unavailable(format!(
                "redis did not answer PING within {:?}",
                self.config.response_timeout
            ))),
        }
    }

    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_members_sort_by_dialog_then_time_then_position() {
        let a = member("u1", 1_000, Position::new(1_732_612_345_678, 9));
        let b = member("u1", 1_000, Position::new(1_732_612_345_678, 10));
        let c = member("u1", 1_000, Position::new(1_732_612_345_679, 0));
        let d = member("u1", 1_001, Position::new(1_732_612_345_000, 0));
        assert!(a < b && b < c && c < d, "{a} {b} {c} {d}");
        // Another user never falls inside u1's range, whatever its id.
        let prefix = dialog_prefix("u1");
        for other in ["u", "u10", "u1~", "u0", "v"] {
            let m = member(other, 1_000, Position::new(1, 0));
            assert!(
                !(m.as_str() >= prefix.as_str() && m.as_str() <= format!("{prefix}~").as_str()),
                "{other}"
            );
        }
        assert_eq!(
            parse_member_tail(&d, "u1"),
            Some((1_001, Position::new(1_732_612_345_000, 0)))
        );
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact("redis://:secret@127.0.0.1:6379/0"),
            "redis://***@127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1"), "redis://127.0.0.1");
    }

    #[test]
    fn entries_without_an_event_field_are_refused_with_a_reason() {
        let p = Position::new(1_732_612_345_678, 0);
        let fields = [
            Value::BulkString(b"other".to_vec()),
            Value::BulkString(b"x".to_vec()),
        ];
        let Decoded::Invalid(reason, _) = decode_fields(p, Some(&fields)) else {
            panic!("an entry without an event field is invalid");
        };
        assert!(reason.contains("no field \"event\""), "{reason}");
        let Decoded::Invalid(reason, _) = decode_fields(p, None) else {
            panic!("a nil entry is invalid");
        };
        assert!(reason.contains("deleted"), "{reason}");
    }

    #[test]
    fn missing_id_and_ts_come_from_the_stream_id() {
        let p = Position::new(1_732_612_345_678, 3);
        let json =
            br#"{"bot":"b","type":"message","direction":"in","provider":"web","user":{"id":"u"}}"#;
        let fields = [
            Value::BulkString(b"event".to_vec()),
            Value::BulkString(json.to_vec()),
        ];
        let Decoded::Unclaimed(event) = decode_fields(p, Some(&fields)) else {
            panic!("a valid adapter entry");
        };
        assert_eq!(event.id, "redis-1732612345678-3");
        assert_eq!(event.ts_millis(), 1_732_612_345_678);
    }
}
