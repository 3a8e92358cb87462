"""Look for any trace of a patient: every Redis key (name and value) and every SQL row."""

from __future__ import annotations

import json

import redis as redis_sync
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine


def dump(client: redis_sync.Redis, name: bytes) -> str:
    kind = client.type(name).decode()
    if kind == "string":
        value = client.get(name)
        return "" if value is None else value.decode(errors="replace")
    if kind == "hash":
        return json.dumps(
            {k.decode(errors="replace"): v.decode(errors="replace") for k, v in client.hgetall(name).items()}
        )
    if kind == "list":
        return json.dumps([v.decode(errors="replace") for v in client.lrange(name, 0, -1)])
    if kind == "set":
        return json.dumps([v.decode(errors="replace") for v in client.smembers(name)])
    if kind == "zset":
        return json.dumps([m.decode(errors="replace") for m in client.zrange(name, 0, -1)])
    if kind == "stream":
        return json.dumps(
            [
                [i.decode(), {k.decode(errors="replace"): v.decode(errors="replace") for k, v in f.items()}]
                for i, f in client.xrange(name)
            ]
        )
    return ""


def redis_traces(url: str, needles: list[str], match: str = "*") -> list[str]:
    client = redis_sync.Redis.from_url(url)
    found = []
    try:
        for name in client.scan_iter(match=match, count=1000):
            content = name.decode(errors="replace") + "\n" + dump(client, name)
            found += [f"redis {name.decode(errors='replace')}: {n}" for n in needles if n in content]
    finally:
        client.close()
    return found


def sql_traces(engine: Engine, needles: list[str], skip_tables: set[str] = frozenset()) -> list[str]:
    found = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            if table in skip_tables:
                continue
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                content = " ".join(str(v) for v in row)
                found += [f"sql {table}: {n}" for n in needles if n in content]
    return found
