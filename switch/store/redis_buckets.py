"""Anti-enumeration buckets in Redis, shared by every switch process: one atomic Lua script
call charges a payer participant and its end users for a batch of resolves, in order.

The script is a line-by-line twin of `switch.directory.buckets.charge_pair` applied in
sequence (integer token counts scaled by TOKEN_SCALE; `limits.py` asserts they stay exact
in Lua's doubles); the same tests run against both. Both buckets of a resolve carry the payer participant as
their hash tag, so on Redis Cluster they share a slot and one script can touch both.
Buckets expire a second after they would be full again: an absent bucket is a full one.
User ids are hashed before they name a key (`identity.user_bucket_key`).
"""

from __future__ import annotations

import redis.asyncio as redis_async
from redis.exceptions import NoScriptError

from switch.directory.buckets import COSTS, SCALE, Charge, refill
from switch.directory.config import BucketPolicy

_COMMON = """
local now = tonumber(ARGV[1])
local function refill(key, cap, rate)
  local v = redis.call('HMGET', key, 't', 'u')
  local t, u = tonumber(v[1]), tonumber(v[2])
  if t == nil then return cap, now end
  if now > u then
    t = math.min(cap, t + (now - u) * rate)
    u = now
  end
  return t, u
end
local function store(key, t, u, cap, rate)
  redis.call('HSET', key, 't', string.format('%d', t), 'u', string.format('%d', u))
  redis.call('PEXPIRE', key, math.floor((cap - t + rate - 1) / rate) + 1000)
end
"""

CHARGE_LUA = _COMMON + """
-- One participant and some of its end users, charged in order.
-- KEYS: the participant's bucket, then one user bucket per resolve.
-- ARGV: now_ms, cost flags (one per user: '0' miss, '1' hit, '2' none: admission only,
-- '3' hit after the answer: never refused; buckets.COST_*), then cap, rate, hit, miss of
-- the participant's policy and of the user policy. Returns admitted, retry_after_ms,
-- limited_by for each user in turn.
local flags = ARGV[2]
local pcap, prate = tonumber(ARGV[3]), tonumber(ARGV[4])
local phit, pmiss = tonumber(ARGV[5]), tonumber(ARGV[6])
local ucap, urate = tonumber(ARGV[7]), tonumber(ARGV[8])
local uhit, umiss = tonumber(ARGV[9]), tonumber(ARGV[10])
local function wait(t, hit, rate)
  local need = hit - t
  if need <= 0 then return 0 end
  return math.floor((need + rate - 1) / rate)
end
local pt, pu = refill(KEYS[1], pcap, prate)
local charged = false
local out = {}
for i = 2, #KEYS do
  local ut, uu = refill(KEYS[i], ucap, urate)
  local uw, pw = wait(ut, uhit, urate), wait(pt, phit, prate)
  local flag = string.sub(flags, i - 1, i - 1)
  if flag ~= '3' and (uw > 0 or pw > 0) then
    local by = 2
    if uw >= pw then by = 1 end
    out[#out + 1] = 0
    out[#out + 1] = math.max(uw, pw)
    out[#out + 1] = by
  else
    if flag ~= '2' then
      if flag == '0' then
        ut, pt = ut - umiss, pt - pmiss
      else
        ut, pt = ut - uhit, pt - phit
      end
      store(KEYS[i], ut, uu, ucap, urate)
      charged = true
    end
    out[#out + 1] = 1
    out[#out + 1] = 0
    out[#out + 1] = 0
  end
end
if charged then store(KEYS[1], pt, pu, pcap, prate) end
return out
"""

REFUND_LUA = _COMMON + """
-- ARGV: now_ms, then cap, rate, refund for the user and for the participant
local ucap, urate, uref = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local pcap, prate, pref = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local ut, uu = refill(KEYS[1], ucap, urate)
local pt, pu = refill(KEYS[2], pcap, prate)
store(KEYS[1], math.min(ucap, ut + uref), uu, ucap, urate)
store(KEYS[2], math.min(pcap, pt + pref), pu, pcap, prate)
return 1
"""


def _charge_args(policy: BucketPolicy) -> tuple[int, int, int, int]:
    return (policy.capacity_tokens * SCALE, policy.refill_tokens_per_minute,
            policy.hit_cost_tokens * SCALE, policy.miss_cost_tokens * SCALE)


class RedisBuckets:
    shared = True  # user keys arrive hashed (`identity.user_bucket_key`)

    def __init__(self, client: redis_async.Redis, prefix: str = "ponte:dir:") -> None:
        self.client = client
        self._prefix = prefix.encode() + b"b:{"
        self._charge_sha: str | None = None
        self._refund_sha: str | None = None

    @classmethod
    def from_url(cls, url: str, prefix: str = "ponte:dir:") -> RedisBuckets:
        client = redis_async.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return cls(client, prefix)

    def _base(self, participant_id: str) -> bytes:
        # The participant id is the hash tag of all its keys (one Cluster slot).
        return self._prefix + participant_id.encode("ascii") + b"}:"

    def _keys(self, user_key: bytes, participant_id: str) -> tuple[bytes, bytes]:
        base = self._base(participant_id)
        return base + b"u:" + user_key, base + b"p"

    async def _load(self) -> None:
        self._charge_sha = await self.client.script_load(CHARGE_LUA)
        self._refund_sha = await self.client.script_load(REFUND_LUA)

    async def _run(self, queue) -> list:
        """Queue commands with `queue(pipe)` and run them; reload scripts once if Redis
        lost them (restart, SCRIPT FLUSH): NOSCRIPT fails every EVALSHA alike, so none ran."""
        if self._charge_sha is None:
            await self._load()
        for attempt in (0, 1):
            async with self.client.pipeline(transaction=False) as pipe:
                queue(pipe)
                try:
                    return await pipe.execute()
                except NoScriptError:
                    if attempt:
                        raise
                    await self._load()
        raise AssertionError("unreachable")

    async def charge(self, user_key, participant_id, user_policy, participant_policy, cost,
                     now_ms) -> Charge:
        (charge,) = await self.charge_many(
            [(user_key, participant_id, participant_policy, cost)], user_policy, now_ms
        )
        return charge

    async def charge_many(self, items, user_policy: BucketPolicy, now_ms: int) -> list[Charge]:
        """One script call per payer participant of the batch (its buckets share a Cluster
        slot), all in one pipeline: the same decisions as charging one by one in order."""
        groups: dict[str, tuple[BucketPolicy, list[int], list[bytes], list[str]]] = {}
        for index, (user_key, participant_id, participant_policy, cost) in enumerate(items):
            assert cost in COSTS
            group = groups.get(participant_id)
            if group is None:
                group = groups[participant_id] = (participant_policy, [], [], [])
            group[1].append(index)
            group[2].append(user_key)
            group[3].append(str(int(cost)))
        user_args = _charge_args(user_policy)

        def queue(pipe) -> None:
            sha = self._charge_sha
            for participant_id, (policy, _, user_keys, flags) in groups.items():
                base = self._base(participant_id)
                pipe.execute_command(
                    "EVALSHA", sha, 1 + len(user_keys), base + b"p",
                    *[base + b"u:" + user_key for user_key in user_keys],
                    now_ms, "".join(flags), *_charge_args(policy), *user_args,
                )

        replies = await self._run(queue)
        charges: list[Charge | None] = [None] * len(items)
        for (_, indexes, _, _), reply in zip(groups.values(), replies):
            for position, index in enumerate(indexes):
                admitted, retry_ms, by = reply[3 * position:3 * position + 3]
                charges[index] = Charge(bool(admitted), int(retry_ms), int(by))
        return charges

    async def refund(self, user_key, participant_id, user_policy, participant_policy,
                     now_ms) -> None:
        def queue(pipe) -> None:
            user, participant = self._keys(user_key, participant_id)
            pipe.execute_command(
                "EVALSHA", self._refund_sha, 2, user, participant, now_ms,
                user_policy.capacity_tokens * SCALE, user_policy.refill_tokens_per_minute,
                user_policy.refund_tokens * SCALE, participant_policy.capacity_tokens * SCALE,
                participant_policy.refill_tokens_per_minute,
                participant_policy.refund_tokens * SCALE,
            )

        await self._run(queue)

    async def peek(self, user_key, participant_id, user_policy, participant_policy,
                   now_ms) -> tuple[int, int]:
        """Current (user, participant) balances in whole tokens, rounded down."""
        states = []
        for key in self._keys(user_key, participant_id):
            tokens, updated = await self.client.hmget(key, "t", "u")
            states.append(None if tokens is None else (int(tokens), int(updated)))
        user = refill(states[0], user_policy, now_ms)[0]
        participant = refill(states[1], participant_policy, now_ms)[0]
        return user // SCALE, participant // SCALE

    async def close(self) -> None:
        await self.client.aclose()
