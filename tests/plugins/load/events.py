"""Segment-spec events for the loader tests and the quick loader benchmark (deterministic, no randomness)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

PATHS = ["/", "/pricing", "/blog/how-to-score-leads", "/ebooks/lead-handoff-guide", "/compare/acme", "/product"]
EVENTS = ["Form Submitted", "Content Downloaded", "Email Opened", "Email Link Clicked", "Demo Requested"]


def event(i: int, day: str = "2026-03-02", *, kind: str | None = None) -> dict:
    """Event number ``i`` of ``day``: page, track or identify in turn, all fields a real export has."""
    base = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(seconds=(i * 7) % 86_000)
    kind = kind or ("page", "track", "page", "identify")[i % 4]
    path = PATHS[i % len(PATHS)]
    ev: dict = {
        "messageId": f"msg-{day}-{i:08d}",
        "type": kind,
        "anonymousId": f"anon-{i % 5000:06d}",
        "userId": str(100000 + i % 700) if i % 3 == 0 else None,
        "timestamp": (base - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "sentAt": (base - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "receivedAt": base.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "context": {
            "page": {"path": path, "url": f"https://example.com{path}", "referrer": "https://www.google.com/",
                     "title": "Example — lead hand-off"},
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
            "ip": f"10.0.{i % 250}.{i % 200}",
        },
    }
    if i % 5 == 0:
        ev["context"]["campaign"] = {"source": "linkedin", "medium": "paid_social", "name": "q1-demand"}
    if kind == "page":
        ev["name"] = "Example — lead hand-off"
        ev["properties"] = {"path": path, "url": f"https://example.com{path}", "title": "Example",
                            "referrer": "https://www.google.com/"}
    elif kind == "track":
        ev["event"] = EVENTS[i % len(EVENTS)]
        ev["properties"] = {"form_id": f"form-{i % 7}", "asset_path": path}
    else:
        ev["userId"] = str(100000 + i % 700)
        ev["traits"] = {"email": f"person{i % 700}@example.org", "firstName": "Ada", "lastName": "Lovelace"}
    return ev


def line(i: int, day: str = "2026-03-02", **kw) -> bytes:
    return orjson.dumps(event(i, day, **kw))


def write_file(path: Path, lines: list[bytes] | None = None, *, n: int = 0, day: str = "2026-03-02",
               start: int = 0) -> Path:
    """Write ``lines`` (or ``n`` generated events) as JSONL, gzipped when the name ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "wb") as fh:
        if lines is not None:
            fh.write(b"".join(ln + b"\n" for ln in lines))
        else:
            for k in range(start, start + n, 10_000):
                fh.write(b"".join(line(i, day) + b"\n" for i in range(k, min(k + 10_000, start + n))))
    return path
