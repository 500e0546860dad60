//! The Lua scripts behind every state write that must be atomic. Each runs
//! in one round trip; Redis runs a script alone, so a script is the
//! compare-and-set. Times that decide expiry (slot leases, the event index)
//! come from the Redis server's clock (`TIME`), so engine hosts with skewed
//! clocks agree.

use std::sync::LazyLock;

use redis::Script;

/// KEYS: run hash, all-runs index, status index, event's runs index.
/// ARGV: run JSON, status, created_at, run id, has_error, error, ended_at or "".
/// Returns 1 if created, 0 if the run existed.
pub static CREATE_RUN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HSETNX', KEYS[1], 'run', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'error', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'ended_at', ARGV[7]) end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[4])
return 1
",
    )
});

/// Lua functions the step and run scripts share.
///
/// `finish` ends a running run: status, end time and error on the run
/// hash, and the run moved from the running index to its status index
/// (scored by end time, which `PURGE_FINISHED` goes by); 1 if this call
/// ended it. `order` records a step's first-seen order in the steps hash.
/// `outcome` writes a step's outcome once (1 if written, 0 if one existed).
/// `attempt` records an attempt under its zero-padded number.
const STEP_FUNCTIONS: &str = r"
local function finish(run, running, ended, status, has_error, err, at, id)
  if redis.call('HGET', run, 'status') ~= 'running' then return 0 end
  redis.call('HSET', run, 'status', status, 'ended_at', at)
  if has_error == '1' then
    redis.call('HSET', run, 'error', err)
  else
    redis.call('HDEL', run, 'error')
  end
  local score = redis.call('ZSCORE', running, id)
  redis.call('ZREM', running, id)
  if score then redis.call('ZADD', ended, at, id) end
  return 1
end
local function order(steps, step)
  local field = 'n:' .. step
  if redis.call('HEXISTS', steps, field) == 0 then
    redis.call('HSET', steps, field, redis.call('HINCRBY', steps, '#', 1))
  end
end
local function outcome(steps, step, stored)
  if redis.call('HSETNX', steps, 'o:' .. step, stored) == 0 then return 0 end
  order(steps, step)
  return 1
end
local function attempt(steps, step, number, json)
  order(steps, step)
  redis.call('HSET', steps, 'a:' .. step .. ':' .. number, json)
end
";

fn with_step_functions(body: &str) -> Script {
    Script::new(&format!("{STEP_FUNCTIONS}{body}"))
}

/// KEYS: run hash, running index, new status index.
/// ARGV: status, has_error, error, ended_at, run id.
/// Returns 1 if this call ended the run, 0 if it had ended or does not exist.
pub static FINISH_RUN: LazyLock<Script> = LazyLock::new(|| {
    with_step_functions(
        "return finish(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])",
    )
});

/// KEYS: the run's steps hash. ARGV: step id, zero-padded attempt number,
/// attempt JSON. Records the step's first-seen order too.
pub static RECORD_ATTEMPT: LazyLock<Script> =
    LazyLock::new(|| with_step_functions("attempt(KEYS[1], ARGV[1], ARGV[2], ARGV[3])\nreturn 1"));

/// KEYS: the run's steps hash. ARGV: step id, `{"at", "outcome"}` JSON.
/// Returns 1 if written, 0 if an outcome existed (left unchanged).
pub static SET_OUTCOME: LazyLock<Script> =
    LazyLock::new(|| with_step_functions("return outcome(KEYS[1], ARGV[1], ARGV[2])"));

/// The end of a step in one round trip: its outcome written once and, only
/// if this call wrote it, its attempt recorded and (when ARGV[5] names a
/// status) its run ended.
/// KEYS: the run's steps hash, run hash, running index, new status index.
/// ARGV: step id, `{"at", "outcome"}` JSON, zero-padded attempt number or
/// "" for none, attempt JSON, status or "", has_error, error, ended_at, run id.
/// Returns 1 if this call wrote the outcome, else 0.
pub static END_STEP: LazyLock<Script> = LazyLock::new(|| {
    with_step_functions(
        r"
if outcome(KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[3] ~= '' then attempt(KEYS[1], ARGV[1], ARGV[3], ARGV[4]) end
if ARGV[5] ~= '' then
  finish(KEYS[2], KEYS[3], KEYS[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
end
return 1
",
    )
});

/// KEYS: the run's waits hash (step → event name), the event name's waits
/// hash. ARGV: step id, event name, wait field, wait JSON, waits key prefix.
/// An upsert: a wait moved to another event name leaves the old index.
pub static ADD_WAIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and old ~= ARGV[2] then
  redis.call('HDEL', ARGV[5] .. old .. '}', ARGV[3])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return 1
",
    )
});

/// KEYS: the run's waits hash. ARGV: step id, wait field, waits key prefix.
/// Returns 1 for the one call that removed the wait.
pub static TAKE_WAIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local name = redis.call('HGET', KEYS[1], ARGV[1])
if not name then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return redis.call('HDEL', ARGV[3] .. name .. '}', ARGV[2])
",
    )
});

/// KEYS: by-ts sorted set, bodies hash, by-expiry sorted set of one event
/// name. ARGV: internal id, ts, event JSON, retention ms. Drops up to 100
/// expired events per call, and lets the three keys expire together when
/// the name goes quiet.
pub static INDEX_EVENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', string.format('%.0f', now), 'LIMIT', 0, 100)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
end
local keep = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], string.format('%.0f', now + keep), ARGV[1])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], keep) end
return 1
",
    )
});

/// KEYS: by-ts sorted set, bodies hash. ARGV: since, limit.
/// The event JSONs with `ts >= since`, oldest first.
pub static EVENTS_SINCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(ids))
",
    )
});

/// KEYS: the slot key's sorted set (holder → lease expiry).
/// ARGV: holder, limit, lease ms. Returns 1 if granted or renewed.
pub static ACQUIRE_SLOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  local expires = string.format('%.0f', now + tonumber(ARGV[3]))
  redis.call('ZADD', KEYS[1], expires, ARGV[1])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[1], last[2])
  return 1
end
return 0
",
    )
});

/// KEYS: the slot key's sorted set (holder → lease expiry), its waiters
/// (holder → rank), their registrations' expiry (holder → ms).
/// ARGV: holder, limit, lease ms, rank, wait ms. Returns 1 if granted or
/// renewed. Waiters with one rank sort by holder (a sorted set orders equal
/// scores by member), so `ZRANK` is the number that go before this one.
pub static ACQUIRE_SLOT_RANKED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nows = string.format('%.0f', now)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', nows)
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', nows)
if #gone > 0 then
  redis.call('ZREM', KEYS[2], unpack(gone))
  redis.call('ZREM', KEYS[3], unpack(gone))
end
local function take()
  local expires = string.format('%.0f', now + tonumber(ARGV[3]))
  redis.call('ZADD', KEYS[1], expires, ARGV[1])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[1], last[2])
end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  take()
  return 1
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
local ahead = redis.call('ZRANK', KEYS[2], ARGV[1])
if tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1]) > ahead then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  take()
  return 1
end
redis.call('ZADD', KEYS[3], string.format('%.0f', now + tonumber(ARGV[5])), ARGV[1])
local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], last[2])
redis.call('PEXPIREAT', KEYS[3], last[2])
return 0
",
    )
});

/// GCRA with reservations. KEYS: the throttle key's theoretical arrival
/// time, its reservations (holder → start). ARGV: holder, interval ms,
/// tolerance ms (burst × interval), ms a reservation is kept after its
/// start. Returns the holder's reserved start (ms), its earlier one if it
/// has one. Reservations only grow later, so the newest one's expiry
/// covers the set.
pub static RESERVE_START: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('ZSCORE', KEYS[2], ARGV[1])
if held then return string.format('%.0f', tonumber(held)) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keep = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.0f', now - keep))
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local start = math.ceil(math.max(now, tat - tonumber(ARGV[3])))
tat = tat + tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
redis.call('ZADD', KEYS[2], string.format('%.0f', start), ARGV[1])
redis.call('PEXPIRE', KEYS[2], math.ceil(start - now + keep))
return string.format('%.0f', start)
",
    )
});

/// KEYS: the debounce key's hash. ARGV: internal id, event JSON, at, ttl
/// ms. The event becomes the latest unless the one held is as late or
/// later (ids sort by time); a new burst starts at `at`. Returns
/// {event, since, last} as held now.
pub static DEBOUNCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('HGET', KEYS[1], 'id')
if not held then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'event', ARGV[2], 'since', ARGV[3], 'last', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
elseif held < ARGV[1] then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'event', ARGV[2], 'last', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return redis.call('HMGET', KEYS[1], 'event', 'since', 'last')
",
    )
});

/// KEYS: the debounce key's hash. ARGV: internal id. Deletes it if it
/// still holds that event; 1 if this call did.
pub static TAKE_DEBOUNCED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
",
    )
});

/// KEYS: the batch key's open batch, the event's membership.
/// ARGV: the batch key prefix, candidate id, event JSON, max size, opened
/// at (ms), keep (ms). An event that is a member already joins nothing;
/// else it joins the open batch or opens one named by the candidate, and a
/// batch that reaches the max size is no longer open. Returns {batch id,
/// size, opened at}.
pub static BATCH_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id = redis.call('GET', KEYS[2])
if not id then
  id = redis.call('GET', KEYS[1])
  if not id then
    id = ARGV[2]
    redis.call('SET', KEYS[1], id, 'PX', ARGV[6])
    redis.call('HSET', ARGV[1] .. id .. '}', 'at', ARGV[5], 'n', 0)
  end
  local batch = ARGV[1] .. id .. '}'
  local n = redis.call('HINCRBY', batch, 'n', 1)
  redis.call('HSET', batch, 'e' .. n, ARGV[3])
  redis.call('PEXPIRE', batch, ARGV[6])
  redis.call('SET', KEYS[2], id, 'PX', ARGV[6])
  if n >= tonumber(ARGV[4]) then
    redis.call('DEL', KEYS[1])
  end
end
local got = redis.call('HMGET', ARGV[1] .. id .. '}', 'n', 'at')
return {id, got[1] or '0', got[2] or '0'}
",
    )
});

/// KEYS: the batch key's open batch. ARGV: batch id. Seals the batch if it
/// is the open one.
pub static SEAL_BATCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// KEYS: the all-runs index, then the index of each ended status.
/// ARGV: cutoff (ms), most runs to delete, the key prefix. Deletes runs whose
/// ended-status score is below the cutoff: the run hash, its steps and waits,
/// and its entries in the indexes and its event's run index (keys built here,
/// like the wait scripts': one slot on a cluster, see `keys`). Returns how
/// many.
pub static PURGE_FINISHED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
local limit = tonumber(ARGV[2])
for i = 2, #KEYS do
  if n >= limit then break end
  local ids = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[1], 'LIMIT', 0, limit - n)
  for _, id in ipairs(ids) do
    local run = ARGV[3] .. 'run:{' .. id .. '}'
    local body = redis.call('HGET', run, 'run')
    if body then
      local ok, decoded = pcall(cjson.decode, body)
      if ok and type(decoded) == 'table' and type(decoded.event) == 'table'
          and type(decoded.event.internal_id) == 'string' then
        redis.call('ZREM', ARGV[3] .. 'event-runs:{' .. decoded.event.internal_id .. '}', id)
      end
    end
    redis.call('DEL', run, run .. ':steps', run .. ':waits')
    redis.call('ZREM', KEYS[i], id)
    redis.call('ZREM', KEYS[1], id)
    n = n + 1
  end
end
return n
",
    )
});
