"""A small synthetic labelled corpus with known structure, shared by the identifier tests.

Each device queries its own names in a fixed order, with jitter; "plug" and "cam" both start
with ``pool.ntp.org`` (ambiguous first query) and differ in their stack fingerprint; "bulb"
and "speaker" are told apart by their first name. "ghost" is never in training.
"""

from __future__ import annotations

import numpy as np

from phloem.iot.events import Event, Observation, Query

NAMES = {
    "plug": ["pool.ntp.org", "api.plugco.com", "time.plugco.com"],
    "cam": ["pool.ntp.org", "stream.camco.net", "cfg.camco.net"],
    "bulb": ["iot.bulbco.io", "ota.bulbco.io"],
    "speaker": ["voice.talkco.com", "music.talkco.com", "pool.ntp.org"],
    "ghost": ["x.ghostco.dev", "y.ghostco.dev"],
}
STACK = {"plug": "ttl=255 id0", "cam": "ttl=64", "bulb": "ttl=255", "speaker": "ttl=64 edns",
         "ghost": "ttl=128"}  # fmt: skip
HIERARCHY = {
    "plug": ("PlugCo", "plug"),
    "cam": ("CamCo", "camera"),
    "bulb": ("BulbCo", "light"),
    "speaker": ("TalkCo", "speaker"),
}


def event(device: str, rng: np.random.Generator, *, day: str = "2023-10-19", i: int = 0) -> Event:
    qs = tuple(
        Query(0.0 if j == 0 else float(j * 2 + rng.uniform(0, 1)), n, 1, "8.8.8.8", STACK[device])
        for j, n in enumerate(NAMES[device])
    )
    return Event(f"{device}-mac", 1_700_000_000.0 + i * 1000, qs, device, f"{device}-{day}-{i}",
                 day)  # fmt: skip


def corpus(
    per_day: int = 12, days: int = 3, seed: int = 0, devices: tuple[str, ...] = tuple(HIERARCHY)
) -> list[Event]:
    rng = np.random.default_rng(seed)
    return [
        event(dev, rng, day=f"2023-10-{19 + d}", i=i)
        for d in range(days)
        for dev in devices
        for i in range(per_day)
    ]


def observations(e: Event, key: str | None = None) -> list[Observation]:
    """The event's queries as a stream (absolute time)."""
    return [
        Observation(e.anchor_utc + q.t, key or e.key, "query", q.name, q.qtype, q.resolver, q.stack)
        for q in e.queries
    ]
