"""The Lua scripts that make spate's Redis operations atomic.

Each script touches only keys of one partition (one cluster slot, see :mod:`.keys`),
or one topic's metadata key.
They run on Redis 6.2 and 7.x: ``redis.replicate_commands()`` (a no-op on 7.x) lets a
6.2 script write after reading the server time.

Scripts are called with EVALSHA inside pipelines; a server that lost its script cache
(a restart) answers NOSCRIPT, which :meth:`Scripts.load` repairs before a retry. Errors
the adapter must recognise start with a fixed word (``SPATE_FENCED``,
``SPATE_NO_TOPIC``).
"""

from __future__ import annotations

import hashlib
from typing import Any

_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local function fmt(n) return string.format('%d', n) end
local function offset_of(id) return tonumber(string.sub(id, 3)) end
local function id_before(offset)
  if offset <= 0 then return '0-0' end
  return '1-' .. fmt(offset - 1)
end
local function field(flat, name)
  for i = 1, #flat, 2 do if flat[i] == name then return flat[i + 1] end end
  return nil
end
local function end_offset(stream)
  local last = field(redis.call('XINFO', 'STREAM', stream), 'last-generated-id')
  if string.sub(last, 1, 2) == '0-' then return 0 end
  return offset_of(last) + 1
end
local function fence(epochs, group, epoch)
  if redis.call('HGET', epochs, group) ~= epoch then
    return redis.error_reply('SPATE_FENCED epoch ' .. epoch .. ' is stale')
  end
  return nil
end
"""

PUBLISH = """
-- KEYS: stream. ARGV: dedup key prefix, dedup window ms, packed records.
-- Packed records (see producer.pack_records), each field a 4-byte big-endian length and
-- the bytes: dedup id ('' = none), a key flag byte (1 = has key), key, value, timestamp
-- ms (decimal), headers ('' = none). One packed argument instead of several per record
-- keeps the client's command encoding cheap: that, not the server, limits publishing.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('SPATE_NO_TOPIC ' .. KEYS[1])
end
local data = ARGV[3]
local pos = 1
local function take()
  local len
  len, pos = struct.unpack('>I4', data, pos)
  local text = string.sub(data, pos, pos + len - 1)
  pos = pos + len
  return text
end
local nxt = end_offset(KEYS[1])
local first = nxt
local dropped = 0
while pos <= #data do
  local dedup = take()
  local has_key
  has_key, pos = struct.unpack('B', data, pos)
  local key, value, ts, headers = take(), take(), take(), take()
  local keep = true
  if dedup ~= '' then
    keep = redis.call('SET', ARGV[1] .. dedup, fmt(nxt), 'NX', 'PX', ARGV[2])
  end
  if keep then
    local id = '1-' .. fmt(nxt)
    if has_key == 1 and headers ~= '' then
      redis.call('XADD', KEYS[1], id, 'v', value, 't', ts, 'k', key, 'h', headers)
    elseif has_key == 1 then
      redis.call('XADD', KEYS[1], id, 'v', value, 't', ts, 'k', key)
    elseif headers ~= '' then
      redis.call('XADD', KEYS[1], id, 'v', value, 't', ts, 'h', headers)
    else
      redis.call('XADD', KEYS[1], id, 'v', value, 't', ts)
    end
    nxt = nxt + 1
  else
    dropped = dropped + 1
  end
end
return {first, nxt - first, dropped}
"""

CLAIM_TOPIC = """
-- KEYS: topic metadata. ARGV: partitions, incarnation. 1 if this call created the
-- topic, 0 if it existed. The partition count (the claim: first writer wins) and the
-- incarnation are written at once, so nobody reads one without the other.
if redis.call('HSETNX', KEYS[1], 'partitions', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'incarnation', ARGV[2])
return 1
"""

TAKEOVER = """
-- KEYS: stream, epochs, committed. ARGV: group, epoch, consumer, offset reset.
-- Creates the consumer group if needed, claims every pending entry (of any previous
-- owner) for this consumer, and moves the group cursor to the committed position so
-- the claimed entries are delivered again, in order. Returns that position.
local refused = fence(KEYS[2], ARGV[1], ARGV[2])
if refused then return refused end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('SPATE_NO_TOPIC ' .. KEYS[1])
end
local exists = false
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  if field(g, 'name') == ARGV[1] then exists = true end
end
if not exists then redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0') end
local cursor = '0-0'
repeat
  cursor = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, cursor,
                      'COUNT', 1000, 'JUSTID')[1]
until cursor == '0-0'
local position
local committed = redis.call('HGET', KEYS[3], ARGV[1])
if committed then
  position = tonumber(committed)
elseif ARGV[4] == 'latest' then
  local oldest = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1)
  if #oldest > 0 then
    position = offset_of(oldest[1][1])
  else
    position = end_offset(KEYS[1])
  end
else
  position = 0
end
redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], id_before(position))
return position
"""

READ = """
-- KEYS: stream, epochs. ARGV: group, epoch, consumer, count, cursor.
-- Sets the group cursor to where the reader expects it first, so a read whose reply
-- was lost (or a seek) just reads the same entries again.
local refused = fence(KEYS[2], ARGV[1], ARGV[2])
if refused then return refused end
redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], ARGV[5])
return redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[3], 'COUNT', ARGV[4],
                  'STREAMS', KEYS[1], '>')
"""

COMMIT = """
-- KEYS: per partition: stream, epochs, committed. ARGV: group, then per partition:
-- epoch, through. All or nothing: first every epoch is checked (a stale one refuses
-- the whole commit, naming the streams), then each partition's pending entries up to
-- and including offset `through` are acknowledged and `through + 1` is recorded.
local stale = {}
for i = 1, #KEYS, 3 do
  if redis.call('HGET', KEYS[i + 1], ARGV[1]) ~= ARGV[2 + (i - 1) / 3 * 2] then
    stale[#stale + 1] = KEYS[i]
  end
end
if #stale > 0 then
  return redis.error_reply('SPATE_FENCED a newer owner holds ' .. table.concat(stale, ', '))
end
local acked = 0
for i = 1, #KEYS, 3 do
  local through = ARGV[3 + (i - 1) / 3 * 2]
  local upto = '1-' .. through
  while true do
    local pending = redis.call('XPENDING', KEYS[i], ARGV[1], '-', upto, 1000)
    if #pending == 0 then break end
    local ids = {}
    for j, entry in ipairs(pending) do ids[j] = entry[1] end
    acked = acked + redis.call('XACK', KEYS[i], ARGV[1], unpack(ids))
    if #pending < 1000 then break end
  end
  redis.call('HSET', KEYS[i + 2], ARGV[1], fmt(tonumber(through) + 1))
end
return acked
"""

TRIM = """
-- KEYS: stream, committed, stats. ARGV: retention ms ('' = none), now ms, max records
-- ('' = none), max bytes ('' = none), allow loss ('1'/'0').
-- Finds the first offset retention wants to keep, never trims past what a group has not
-- acknowledged unless loss is allowed (then counts, per group, the unacknowledged
-- records removed). Returns {first kept offset, records removed, records lost}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0} end
local first_entry = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
local stop = end_offset(KEYS[1])
if not first_entry then return {stop, 0, 0} end
local first = offset_of(first_entry[1])
local target = first
if ARGV[3] ~= '' then target = math.max(target, stop - tonumber(ARGV[3])) end
if ARGV[4] ~= '' then
  local length = redis.call('XLEN', KEYS[1])
  local used = redis.call('MEMORY', 'USAGE', KEYS[1])
  if length > 0 and used and used > tonumber(ARGV[4]) then
    local keep = math.floor(tonumber(ARGV[4]) * length / used)
    target = math.max(target, stop - keep)
  end
end
if ARGV[1] ~= '' then
  local cutoff = tonumber(ARGV[2]) - tonumber(ARGV[1])
  local lo, hi = target, stop
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local found = redis.call('XRANGE', KEYS[1], '1-' .. fmt(mid), '+', 'COUNT', 1)[1]
    if not found then
      hi = mid
    elseif tonumber(field(found[2], 't')) < cutoff then
      lo = offset_of(found[1]) + 1
    else
      hi = mid
    end
  end
  target = lo
end
local safe = target
local behind = {}
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name = field(g, 'name')
  local delivered = field(g, 'last-delivered-id')
  local unacked = 0
  if string.sub(delivered, 1, 2) ~= '0-' then unacked = offset_of(delivered) + 1 end
  if field(g, 'pending') > 0 then
    local oldest = redis.call('XPENDING', KEYS[1], name, '-', '+', 1)[1]
    unacked = math.min(unacked, offset_of(oldest[1]))
  end
  local committed = redis.call('HGET', KEYS[2], name)
  if committed then unacked = math.min(unacked, tonumber(committed)) end
  behind[name] = unacked
  safe = math.min(safe, unacked)
end
local keep_from = safe
local lost = 0
if ARGV[5] == '1' then
  keep_from = target
  if target > safe then lost = target - math.max(safe, first) end
end
if keep_from <= first then return {first, 0, 0} end
local removed = redis.call('XTRIM', KEYS[1], 'MINID', '1-' .. fmt(keep_from))
for name, unacked in pairs(behind) do
  if unacked < keep_from then
    redis.call('HINCRBY', KEYS[3], name, keep_from - math.max(unacked, first))
  end
end
return {keep_from, removed, lost}
"""

HEARTBEAT = """
-- KEYS: members. ARGV: member, ttl ms. Server time, so member clocks may disagree.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[2]) * 10, 60000))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

ACQUIRE = """
-- KEYS: lease, epochs. ARGV: group, member, ttl ms. Returns the new epoch or nil.
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local epoch = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HSET', KEYS[1], 'member', ARGV[2], 'epoch', epoch)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return epoch
"""

RENEW = """
-- KEYS: lease. ARGV: member, epoch, ttl ms. 1 if still held and extended, else 0.
local held = redis.call('HMGET', KEYS[1], 'member', 'epoch')
if held[1] ~= ARGV[1] or held[2] ~= ARGV[2] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

RELEASE = """
-- KEYS: lease. ARGV: member, epoch. Deletes the lease only if still ours.
local held = redis.call('HMGET', KEYS[1], 'member', 'epoch')
if held[1] ~= ARGV[1] or held[2] ~= ARGV[2] then return 0 end
return redis.call('DEL', KEYS[1])
"""

RANGE = """
-- KEYS: stream. ARGV: first id, count. XRANGE with no group, as raw flat entries
-- (redis-py would turn each entry's fields into a dict).
return redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
"""


class Script:
    """One script's text with the PRELUDE, and its SHA1 for EVALSHA."""

    __slots__ = ("name", "sha", "text")

    def __init__(self, name: str, body: str) -> None:
        self.name = name
        self.text = _PRELUDE + body
        self.sha = hashlib.sha1(self.text.encode()).hexdigest()

    def queue(self, pipe: Any, keys: list[str], args: list[Any]) -> Any:
        """Queue an EVALSHA of this script on a redis-py pipeline; returns the pipeline."""
        return pipe.evalsha(self.sha, len(keys), *keys, *args)


ALL = {
    name: Script(name, body)
    for name, body in {
        "publish": PUBLISH,
        "claim_topic": CLAIM_TOPIC,
        "takeover": TAKEOVER,
        "read": READ,
        "range": RANGE,
        "commit": COMMIT,
        "trim": TRIM,
        "heartbeat": HEARTBEAT,
        "acquire": ACQUIRE,
        "renew": RENEW,
        "release": RELEASE,
    }.items()
}
PUBLISH_SCRIPT = ALL["publish"]
CLAIM_TOPIC_SCRIPT = ALL["claim_topic"]
TAKEOVER_SCRIPT = ALL["takeover"]
READ_SCRIPT = ALL["read"]
RANGE_SCRIPT = ALL["range"]
COMMIT_SCRIPT = ALL["commit"]
TRIM_SCRIPT = ALL["trim"]
HEARTBEAT_SCRIPT = ALL["heartbeat"]
ACQUIRE_SCRIPT = ALL["acquire"]
RENEW_SCRIPT = ALL["renew"]
RELEASE_SCRIPT = ALL["release"]
