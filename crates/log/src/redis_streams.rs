//! The Redis backend: the stream `{prefix}events` (by default `botwatch:events`).
//!
//! Keys (prefix `botwatch:` unless configured):
//! - `events`                 the log; each entry has the field `event` (event JSON)
//! - `events:dead`            entries that are not valid events, with the reason
//! - `dedup:{bot}:{id}`       the stream id of the entry that owns that event id
//! - `history:{bot}:{user}`   sorted set: score = event ms, member = padded stream id
//! - `deadmark:{stream id}`   set once an entry has been dead-lettered
//!
//! Writes by botwatch go through one Lua script per batch (dedup check, `XADD`,
//! owner and history index), so a retried event is never stored twice. Entries that
//! adapters `XADD` themselves are validated when read: every reader runs the admit
//! script on what it read, which claims the event id for the first entry that has it
//! (the same answer for every reader, on every node, after every restart), indexes it,
//! and dead-letters invalid entries exactly once.

use std::time::Duration;

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
    /// How long a retried event id is remembered.
    pub dedup_ttl: Duration,
    /// How long one command may take before Redis counts as unavailable.
    pub response_timeout: Duration,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            prefix: "botwatch:".to_owned(),
            dedup_ttl: Duration::from_secs(30 * 24 * 3600),
            response_timeout: Duration::from_secs(2),
        }
    }
}

const LUA_PAD: &str = r#"
local function pad(sid)
  local ms, sq = string.match(sid, '^(%d+)-(%d+)$')
  return string.rep('0', 15 - #ms) .. ms .. '-' .. string.rep('0', 10 - #sq) .. sq
end
"#;

/// KEYS[1] = events; ARGV = prefix, ttl, then (bot, id, user, ts ms, json) per event;
/// `user` is empty for events that are not indexed in the history (not messages).
/// Returns per event the new stream id, or 0 when the id was already taken.
const LUA_INGEST: &str = r#"
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV, 5 do
  local bot, id, user, ts, json = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
  local dk = prefix .. 'dedup:' .. bot .. ':' .. id
  if redis.call('EXISTS', dk) == 0 then
    local sid = redis.call('XADD', KEYS[1], '*', 'event', json)
    redis.call('SET', dk, sid, 'EX', ttl)
    if user ~= '' then
      redis.call('ZADD', prefix .. 'history:' .. bot .. ':' .. user, ts, pad(sid))
    end
    out[#out+1] = sid
  else
    out[#out+1] = 0
  end
end
return out
"#;

/// KEYS[1] = dead-letter stream; ARGV = prefix, ttl, then six values per entry read:
/// ('v', stream id, bot, id, user or '' when not indexed, ts ms) for a valid event, or
/// ('x', stream id, reason, raw, '', '') for an invalid one.
/// Returns per entry 1 (counts), 0 (duplicate of an earlier entry), 2 (dead-lettered).
const LUA_ADMIT: &str = r#"
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV, 6 do
  local tag, sid = ARGV[i], ARGV[i+1]
  if tag == 'v' then
    local bot, id, user, ts = ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5]
    local dk = prefix .. 'dedup:' .. bot .. ':' .. id
    local owner = redis.call('GET', dk)
    if owner == sid then
      out[#out+1] = 1
    elseif owner then
      out[#out+1] = 0
    else
      redis.call('SET', dk, sid, 'EX', ttl)
      if user ~= '' then
        redis.call('ZADD', prefix .. 'history:' .. bot .. ':' .. user, ts, pad(sid))
      end
      out[#out+1] = 1
    end
  else
    if redis.call('SET', prefix .. 'deadmark:' .. sid, '1', 'NX', 'EX', ttl) then
      redis.call('XADD', KEYS[1], '*', 'id', sid, 'reason', ARGV[i+2], 'event', ARGV[i+3])
    end
    out[#out+1] = 2
  end
end
return out
"#;

/// KEYS[1] = history zset, KEYS[2] = events; ARGV = cursor score or '+inf',
/// cursor member or '', limit. Returns {member, score, fields or false} newest first.
const LUA_HISTORY: &str = r#"
local limit = tonumber(ARGV[3])
local out = {}
local function add(member, score)
  local ms, sq = string.match(member, '^0*(%d+)-0*(%d+)$')
  local sid = ms .. '-' .. sq
  local e = redis.call('XRANGE', KEYS[2], sid, sid)
  out[#out+1] = {member, score, e[1] and e[1][2] or false}
end
local max = ARGV[1]
if ARGV[2] ~= '' then
  local tied = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[1], 'BYSCORE', 'WITHSCORES')
  for i = #tied - 1, 1, -2 do
    if #out >= limit then break end
    if tied[i] < ARGV[2] then add(tied[i], tied[i+1]) end
  end
  max = '(' .. ARGV[1]
end
if #out < limit then
  local rest = redis.call('ZRANGE', KEYS[1], max, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, limit - #out, 'WITHSCORES')
  for i = 1, #rest, 2 do add(rest[i], rest[i+1]) end
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

    fn ttl_secs(&self) -> u64 {
        self.config.dedup_ttl.as_secs().max(1)
    }
}

/// The longest a blocking read waits in one command.
const MAX_BLOCK: Duration = Duration::from_secs(5);

/// A Redis URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***{}", &url[..scheme], &url[at..]),
        _ => url.to_owned(),
    }
}

/// The member under which an entry is kept in a dialog's history set: ordered like
/// the positions themselves when compared as strings.
fn history_member(p: Position) -> String {
    format!("{:015}-{:010}", p.ms, p.seq)
}

/// The user whose history indexes this event, or "" when it is not a message.
fn history_user(e: &Event) -> &str {
    if e.kind == EventKind::Message { &e.user.id } else { "" }
}

fn time_of(p: Position) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(p.ms as i64).unwrap_or_default()
}

/// Decodes one stream entry into an event, the same way for every reader: missing
/// `id` and `ts` are taken from the stream id, and validation uses the entry's own
/// append time as "now", so the answer never depends on when or where it is read.
fn decode_fields(position: Position, fields: Option<&[Value]>) -> Result<Event, (String, Vec<u8>)> {
    let Some(fields) = fields else {
        return Err(("the entry has no fields (deleted or trimmed)".to_owned(), Vec::new()));
    };
    let raw = fields
        .chunks(2)
        .find_map(|kv| match kv {
            [Value::BulkString(k), Value::BulkString(v)] if k.as_slice() == b"event" => Some(v),
            _ => None,
        })
        .ok_or_else(|| ("the entry has no field \"event\"".to_owned(), Vec::new()))?;
    let mut value: serde_json::Value = serde_json::from_slice(raw)
        .map_err(|e| (format!("the event is not valid JSON: {e}"), raw.clone()))?;
    if let serde_json::Value::Object(obj) = &mut value {
        if obj.get("id").is_none_or(|v| v.is_null()) {
            obj.insert("id".to_owned(), format!("redis-{position}").into());
        }
        if obj.get("ts").is_none_or(|v| v.is_null()) {
            let ts = time_of(position).to_rfc3339_opts(SecondsFormat::Millis, true);
            obj.insert("ts".to_owned(), ts.into());
        }
    }
    if raw.len() > Limits::default().max_event_bytes {
        return Err((
            format!("event is {} bytes; at most {}", raw.len(), Limits::default().max_event_bytes),
            raw.clone(),
        ));
    }
    parse_event_value(value, 0, time_of(position), &Limits::default()).map_err(|faults| {
        let reason = faults
            .iter()
            .map(|f| match &f.field {
                Some(field) => format!("{field}: {}", f.reason),
                None => f.reason.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        (reason, raw.clone())
    })
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
fn xread_entries(reply: Value) -> Result<Vec<(Position, Option<Vec<Value>>)>, LogError> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(s) => s,
        Value::Map(m) => m.into_iter().map(|(k, v)| Value::Array(vec![k, v])).collect(),
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
        let mut inv = self.scripts.ingest.prepare_invoke();
        inv.key(&self.events_key)
            .arg(&self.config.prefix)
            .arg(self.ttl_secs());
        for e in &events {
            inv.arg(&e.bot)
                .arg(&e.id)
                .arg(history_user(e))
                .arg(e.ts_millis())
                .arg(e.to_json());
        }
        let mut con = self.con.clone();
        let reply: Vec<Value> = inv.invoke_async(&mut con).await?;
        let mut receipt = AppendReceipt::default();
        for v in reply {
            match v {
                Value::Int(0) => receipt.duplicates += 1,
                _ => receipt.stored += 1,
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
        cmd.arg("STREAMS").arg(&self.events_key).arg(after.to_string());
        let reply: Value = cmd.query_async(&mut con).await?;
        let raw = xread_entries(reply)?;

        let mut batch = ReadBatch {
            next: raw.last().map(|(p, _)| *p).unwrap_or(after),
            ..ReadBatch::default()
        };
        if raw.is_empty() {
            return Ok(batch);
        }
        let mut decoded = Vec::with_capacity(raw.len());
        let mut admit = self.scripts.admit.prepare_invoke();
        admit
            .key(&self.dead_key)
            .arg(&self.config.prefix)
            .arg(self.ttl_secs());
        for (position, fields) in &raw {
            match decode_fields(*position, fields.as_deref()) {
                Ok(event) => {
                    admit
                        .arg("v")
                        .arg(position.to_string())
                        .arg(&event.bot)
                        .arg(&event.id)
                        .arg(history_user(&event))
                        .arg(event.ts_millis());
                    decoded.push(Some(event));
                }
                Err((reason, raw)) => {
                    warn!(position = %position, %reason, "invalid entry in the event stream; dead-lettered");
                    admit
                        .arg("x")
                        .arg(position.to_string())
                        .arg(reason)
                        .arg(raw)
                        .arg("")
                        .arg("");
                    decoded.push(None);
                }
            }
        }
        let verdicts: Vec<i64> = admit.invoke_async(&mut self.con.clone()).await?;
        if verdicts.len() != raw.len() {
            return Err(protocol("admit verdicts"));
        }
        for (((position, _), event), verdict) in raw.iter().zip(decoded).zip(verdicts) {
            match (event, verdict) {
                (Some(event), 1) => batch.entries.push(LogEntry {
                    position: *position,
                    event,
                }),
                (Some(_), _) => batch.duplicates += 1,
                (None, _) => batch.dead_lettered += 1,
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
        let key = format!("{}history:{bot}:{user}", self.config.prefix);
        let (score, member) = match before {
            Some(c) => (c.ts_ms.to_string(), history_member(c.position)),
            None => ("+inf".to_owned(), String::new()),
        };
        let rows: Vec<Value> = self
            .scripts
            .history
            .key(&key)
            .key(&self.events_key)
            .arg(score)
            .arg(member)
            .arg(limit)
            .invoke_async(&mut self.con.clone())
            .await?;
        let mut page = HistoryPage::default();
        for row in &rows {
            let Value::Array(parts) = row else {
                return Err(protocol("history row"));
            };
            let (Some(member), Some(score)) = (
                parts.first().and_then(bulk_str),
                parts.get(1).and_then(bulk_str),
            ) else {
                return Err(protocol("history member"));
            };
            let position: Position = member
                .split_once('-')
                .and_then(|(ms, seq)| Some(Position::new(ms.parse().ok()?, seq.parse().ok()?)))
                .ok_or_else(|| protocol("history member"))?;
            let ts_ms: i64 = score
                .parse::<f64>()
                .map(|s| s as i64)
                .map_err(|_| protocol("history score"))?;
            let fields = match parts.get(2) {
                Some(Value::Array(f)) => Some(f.as_slice()),
                _ => None,
            };
            match decode_fields(position, fields) {
                Ok(event) => page.entries.push(LogEntry { position, event }),
                // Indexed but gone from the stream (trimmed): nothing left to show.
                Err((reason, _)) => warn!(%position, %reason, "history entry no longer readable"),
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
    fn history_members_sort_like_positions() {
        let a = history_member(Position::new(1_732_612_345_678, 9));
        let b = history_member(Position::new(1_732_612_345_678, 10));
        let c = history_member(Position::new(1_732_612_345_679, 0));
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("redis://:secret@127.0.0.1:6379/0"), "redis://***@127.0.0.1:6379/0");
        assert_eq!(redact("redis://127.0.0.1"), "redis://127.0.0.1");
    }

    #[test]
    fn entries_without_an_event_field_are_refused_with_a_reason() {
        let p = Position::new(1_732_612_345_678, 0);
        let err = decode_fields(p, Some(&[Value::BulkString(b"other".to_vec()), Value::BulkString(b"x".to_vec())]))
            .expect_err("no event field");
        assert!(err.0.contains("no field \"event\""), "{}", err.0);
        let err = decode_fields(p, None).expect_err("nil entry");
        assert!(err.0.contains("deleted"), "{}", err.0);
    }

    #[test]
    fn missing_id_and_ts_come_from_the_stream_id() {
        let p = Position::new(1_732_612_345_678, 3);
        let json = br#"{"bot":"b","type":"message","direction":"in","provider":"web","user":{"id":"u"}}"#;
        let event = decode_fields(
            p,
            Some(&[Value::BulkString(b"event".to_vec()), Value::BulkString(json.to_vec())]),
        )
        .expect("valid");
        assert_eq!(event.id, "redis-1732612345678-3");
        assert_eq!(event.ts_millis(), 1_732_612_345_678);
    }
}
