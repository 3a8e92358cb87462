"""The staff desk: the queue of conversations waiting for a person, who has which, and what staff
do with one (claim, release, transfer, reply, note, hand back, close).

Ownership stays where the gateway keeps it, in the conversation's Redis hash (channels/store.py):
`owner` (waiting_for_staff → staff → bot | closed) and, while staff own it, `assignee`. Every
change of owner is one Lua script, so two people claiming at once cannot both win, whichever
gateway process each is on. Every change is published on the conversation's event channel and on
the desk's (`{p}:staff:events`), which the consoles and the patient's open widget listen to.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from channels.messages import OutboundMessage
from channels.store import ConversationStore, Owner, decoded, queue_score

# Service levels by queue priority (STAFF_SLA_SECONDS): how long a conversation may wait.
SLA_CLASS = {"emergency": "emergency", "crisis": "emergency", "screen_error": "emergency", "urgent": "urgent"}
NOTE_MAX_CHARS = 2000
REPLY_MAX_CHARS = 1600  # ten SMS segments; the console shows the 320-character page as well
# The fields of a conversation's hash that a queue item shows (StaffDesk._item), read by
# _QUEUE_INFOS.
QUEUE_FIELDS = (
    "channel",
    "priority",
    "reason",
    "owner",
    "handoff_at",
    "updated_at",
    "assignee",
    "assignee_name",
    "callback",
    "alert",
)

# Claim: only a conversation waiting for staff, or one the claimant already has. Returns
# {"ok"} or {"taken", assignee id, assignee name} or {"not_waiting", owner}.
_CLAIM = """
local ck = KEYS[1]
local owner = redis.call('HGET', ck, 'owner')
if not owner then return {'missing', ''} end
local assignee = redis.call('HGET', ck, 'assignee')
if owner == 'staff' then
  if assignee == ARGV[1] then return {'ok', ''} end
  return {'taken', assignee or '', redis.call('HGET', ck, 'assignee_name') or ''}
end
if owner ~= 'waiting_for_staff' then return {'not_waiting', owner} end
redis.call('HSET', ck, 'owner', 'staff', 'assignee', ARGV[1], 'assignee_name', ARGV[2], 'claimed_at', ARGV[3],
  'updated_at', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return {'ok', ''}
"""

# Change the owner of a conversation staff hold, if `ARGV[1]` is its assignee (or ARGV[2] == '1':
# a supervisor). ARGV[3] the new owner; ARGV[4..] field/value pairs to set.
_CHANGE = """
local ck = KEYS[1]
local owner = redis.call('HGET', ck, 'owner')
if not owner then return {'missing', ''} end
if owner ~= 'staff' then return {'not_assigned', owner} end
local assignee = redis.call('HGET', ck, 'assignee') or ''
if assignee ~= ARGV[1] and ARGV[2] ~= '1' then
  return {'forbidden', assignee, redis.call('HGET', ck, 'assignee_name') or ''}
end
local new_owner = ARGV[3]
if new_owner ~= 'staff' then
  redis.call('HDEL', ck, 'assignee', 'assignee_name', 'claimed_at', 'alert', 'alert_priority')
  redis.call('ZREM', KEYS[3], ARGV[5])
end
if new_owner == 'waiting_for_staff' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
end
if new_owner == 'bot' or new_owner == 'closed' then
  redis.call('HDEL', ck, 'priority', 'callback', 'handoff_at')
end
for i = 6, #ARGV, 2 do redis.call('HSET', ck, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', ck, 'owner', new_owner)
return {'ok', assignee}
"""

# The queue items' fields (ARGV) of each conversation (KEYS), as one JSON array: every console
# fetches the queue on every desk event, and parsing a pipeline of whole hashes (hundreds of
# replies, thousands of items, in Python) took most of the gateway's time (careline/bench_staff.py).
# A conversation that is gone is an empty object.
_QUEUE_INFOS = """
local out = {}
for i, ck in ipairs(KEYS) do
  local values = redis.call('HMGET', ck, unpack(ARGV))
  local item = {}
  for j, field in ipairs(ARGV) do
    if values[j] then item[field] = values[j] end
  end
  out[i] = item
end
return cjson.encode(out)
"""


class DeskError(Exception):
    """A desk action that cannot be done; `code` is the API's error, `status` its HTTP status."""

    status = 409
    code = "conflict"

    def __init__(self, detail: str, **info: Any):
        super().__init__(detail)
        self.detail = detail
        self.info = info


class NotFound(DeskError):
    status, code = 404, "not_found"


class Taken(DeskError):
    status, code = 409, "taken"


class NotYours(DeskError):
    status, code = 403, "forbidden"


class NotWaiting(DeskError):
    status, code = 409, "not_waiting"


class CannotSend(DeskError):
    status, code = 409, "cannot_send"


@dataclass(frozen=True)
class Actor:
    """Who acts at the desk (from the staff session)."""

    id: int
    name: str
    supervisor: bool = False


@dataclass(frozen=True)
class ServiceLevels:
    emergency: int = 60
    urgent: int = 300
    normal: int = 900

    @classmethod
    def parse(cls, text: str) -> ServiceLevels:
        """ "emergency=60,urgent=300,normal=900" (seconds); unnamed classes keep their defaults."""
        values: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, seconds = part.partition("=")
            if name.strip() not in ("emergency", "urgent", "normal") or not seconds.strip().isdigit():
                raise ValueError(f"STAFF_SLA_SECONDS: expected e.g. emergency=60,urgent=300,normal=900, got {part!r}")
            values[name.strip()] = int(seconds)
        return cls(**values)

    def for_priority(self, priority: str) -> int:
        return getattr(self, SLA_CLASS.get(priority, "normal"))


class StaffDesk:
    def __init__(self, redis: Redis, store: ConversationStore, levels: ServiceLevels | None = None):
        self.redis = redis
        self.store = store
        self.levels = levels or ServiceLevels()
        self.prefix = store.prefix
        self._claim = redis.register_script(_CLAIM)
        self._change = redis.register_script(_CHANGE)
        self._queue_infos = redis.register_script(_QUEUE_INFOS)

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @property
    def events_channel(self) -> str:
        return self._k("staff", "events")

    async def announce(self, event: dict[str, Any]) -> None:
        """Tell every console (the queue changed, an alert); ids and priorities only, never text."""
        await self.redis.publish(self.events_channel, json.dumps(event))

    # --- reading ---------------------------------------------------------------------------
    async def info(self, key: str) -> dict[str, Any]:
        info = await self.store.info(key)
        if not info:
            raise NotFound("no such conversation (it may have been erased)")
        return info

    def _item(self, key: str, info: dict[str, Any], now: float) -> dict[str, Any]:
        priority = info.get("priority") or "normal"
        since = float(info.get("handoff_at") or info.get("updated_at") or now)
        waiting = max(0, int(now - since))
        sla = self.levels.for_priority(priority)
        owner = info.get("owner", "")
        return {
            "id": key,
            "channel": info.get("channel", ""),
            "priority": priority,
            "reason": info.get("reason", ""),
            "owner": owner,
            "waiting_seconds": waiting,
            "sla_seconds": sla,
            "breached": owner == Owner.WAITING_FOR_STAFF and waiting > sla,
            "assignee": int(info["assignee"]) if info.get("assignee") else None,
            "assignee_name": info.get("assignee_name") or None,
            "callback": info.get("callback") == "1",
            "alert": info.get("alert") or None,
        }

    async def queue(self, actor: Actor, limit: int = 200) -> dict[str, Any]:
        """Waiting conversations, most urgent first; and the ones staff hold (an agent sees their
        own, a supervisor everyone's, with each agent's load)."""
        now = time.time()
        waiting = [decoded(k) for k in await self.redis.zrange(self._k("staff", "waiting"), 0, limit - 1)]
        held = [decoded(k) for k in await self.redis.zrange(self._k("staff", "assigned"), 0, -1)]
        infos = await self._infos(waiting + held)
        items = [self._item(k, infos[k], now) for k in waiting if infos.get(k)]
        mine, load = [], {}
        for key in held:
            info = infos.get(key)
            if not info or info.get("owner") != Owner.STAFF:
                continue
            item = self._item(key, info, now)
            load[item["assignee_name"] or str(item["assignee"])] = load.get(item["assignee_name"], 0) + 1
            if actor.supervisor or item["assignee"] == actor.id:
                mine.append(item)
        result: dict[str, Any] = {"waiting": items, "assigned": mine}
        if actor.supervisor:
            result["load"] = load
        return result

    async def _infos(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        raw = await self._queue_infos(keys=[self._k("conv", k) for k in keys], args=list(QUEUE_FIELDS))
        return dict(zip(keys, json.loads(raw), strict=True))

    async def notes(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in await self.redis.lrange(self._k("notes", key), 0, -1)]

    # --- changing hands --------------------------------------------------------------------
    async def claim(self, key: str, actor: Actor) -> dict[str, Any]:
        now = time.time()
        status, *rest = [
            decoded(x)
            for x in await self._claim(
                keys=[self._k("conv", key), self._k("staff", "waiting"), self._k("staff", "assigned")],
                args=[str(actor.id), actor.name, repr(now), key],
            )
        ]
        if status == "missing":
            raise NotFound("no such conversation (it may have been erased)")
        if status == "taken":
            raise Taken(f"{rest[1] or 'another agent'} has this conversation", assignee=int(rest[0] or 0), name=rest[1])
        if status == "not_waiting":
            raise NotWaiting(f"this conversation is not waiting for staff (it is with the {rest[0]})", owner=rest[0])
        await self._joined(key, actor)
        return {"id": key, "owner": Owner.STAFF.value, "assignee": actor.id, "assignee_name": actor.name}

    async def _joined(self, key: str, actor: Actor) -> None:
        await self.store.publish(key, {"type": "agent", "state": "joined", "name": actor.name})
        await self.announce({"type": "claimed", "id": key, "assignee": actor.id, "name": actor.name})

    async def _change_owner(self, key: str, actor: Actor, owner: Owner, score: float = 0, **fields: str) -> str:
        flat = [x for pair in fields.items() for x in pair]
        status, *rest = [
            decoded(x)
            for x in await self._change(
                keys=[self._k("conv", key), self._k("staff", "waiting"), self._k("staff", "assigned")],
                args=[str(actor.id), "1" if actor.supervisor else "0", owner.value, repr(score), key, *flat],
            )
        ]
        if status == "missing":
            raise NotFound("no such conversation (it may have been erased)")
        if status == "not_assigned":
            raise NotYours(f"nobody holds this conversation (it is with the {rest[0]}): claim it first")
        if status == "forbidden":
            raise NotYours(f"{rest[1] or 'another agent'} has this conversation", assignee=int(rest[0] or 0))
        return rest[0]

    async def release(self, key: str, actor: Actor) -> None:
        """Back to the queue, in its old place (its priority and its wait so far)."""
        info = await self.info(key)
        priority = info.get("priority") or "normal"
        since = float(info.get("handoff_at") or time.time())
        score = queue_score(priority, since, info.get("callback") == "1")
        await self._change_owner(key, actor, Owner.WAITING_FOR_STAFF, score, updated_at=repr(time.time()))
        await self.store.publish(key, {"type": "agent", "state": "left", "name": actor.name})
        await self.announce({"type": "released", "id": key, "priority": priority})

    async def transfer(self, key: str, actor: Actor, to: Actor) -> None:
        await self._change_owner(
            key, actor, Owner.STAFF, assignee=str(to.id), assignee_name=to.name, updated_at=repr(time.time())
        )
        await self._joined(key, to)

    async def hand_back(self, key: str, actor: Actor, owner: Owner, notice: OutboundMessage | None) -> None:
        """Return to the assistant (owner bot) or close (owner closed), telling the patient."""
        await self._change_owner(key, actor, owner, reason=f"staff:{owner.value}", updated_at=repr(time.time()))
        if notice is not None:
            await self.store.append(key, notice.role, [notice], push=True)
        await self.store.publish(key, {"type": "owner", "owner": owner.value})
        await self.announce({"type": owner.value, "id": key})

    async def check_assignee(self, key: str, actor: Actor) -> dict[str, Any]:
        """The conversation's state, if the actor may speak in it (its assignee; not a supervisor
        watching: they transfer it to themselves first, so the patient hears one person)."""
        info = await self.info(key)
        if info.get("owner") != Owner.STAFF:
            raise NotYours(f"nobody holds this conversation (it is with the {info.get('owner')}): claim it first")
        if info.get("assignee") != str(actor.id):
            raise NotYours(f"{info.get('assignee_name') or 'another agent'} has this conversation")
        return info

    async def add_note(self, key: str, actor: Actor, text: str) -> dict[str, Any]:
        """A private note for staff; never shown to the patient, erased with the conversation."""
        info = await self.info(key)
        note = {"text": text[:NOTE_MAX_CHARS], "author": actor.name, "author_id": actor.id, "ts": time.time()}
        created = float(info.get("created_at") or time.time())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(self._k("notes", key), json.dumps(note))
            pipe.expireat(self._k("notes", key), int(created + self.store.retention))
            await pipe.execute()
        return note
