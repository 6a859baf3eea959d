"""The units of a contact's behaviour: a web session (pages, with forms, downloads and signals on them) and a
server-side event (e-mail, social), and the scoring features a day of them adds up to."""

from __future__ import annotations

import random

from handoff.sample.score_bounds import add_counts
from handoff.sample.simulation_tables import SimulationTables


class Session:
    __slots__ = ("actions", "campaign", "day", "identify_first", "late", "mandatory", "offsets", "pages",
                 "referrer", "sec")

    def __init__(self, day: int, sec: int) -> None:
        self.day = day
        self.sec = sec  # start, in seconds since midnight UTC
        self.pages: list[int] = []  # page indexes into SimulationTables.pages
        self.offsets: list[int] = []  # each page's offset in seconds from the start
        self.actions: list[tuple] = []  # (page position, kind, *args)
        self.campaign: dict | None = None
        self.referrer = ""
        self.mandatory = False  # the sign-up, a signal or the MQL burst: never toned down
        self.identify_first = False
        self.late = False

    def add_page(self, rng: random.Random, page: int) -> int:
        self.offsets.append(self.offsets[-1] + 15 + int(rng.random() * 185) if self.offsets else 0)
        self.pages.append(page)
        return len(self.pages) - 1

    def features(self, tables: SimulationTables) -> dict[str, int]:
        counts = {"sessions": 1}
        for page in self.pages:
            if page in tables.scoring_pages:
                content_type = tables.pages[page].content_type
                key = ("pricing_page_views" if content_type == "pricing" else "comparison_page_views"
                       if content_type == "comparison" else "careers_page_views")
                counts[key] = counts.get(key, 0) + 1
        for action in self.actions:
            kind = action[1]
            if kind == "form":
                counts["form_submissions"] = counts.get("form_submissions", 0) + 1
                if action[3] is not None:
                    key = "downloads_" + (tables.pages[action[3]].buying_stage or "awareness")
                    counts[key] = counts.get(key, 0) + 1
            elif kind == "download":
                key = "downloads_" + (tables.pages[action[2]].buying_stage or "awareness")
                counts[key] = counts.get(key, 0) + 1
            elif kind in ("signal", "job"):
                feature = tables.event_feature.get(action[2])
                if feature:
                    counts[feature] = counts.get(feature, 0) + 1
                if len(action) > 3 and action[3]:
                    counts["form_submissions"] = counts.get("form_submissions", 0) + 1
        return counts

    def end_sec(self) -> int:
        return self.sec + (self.offsets[-1] if self.offsets else 0) + 60


class ServerEvent:
    """A server-side event (email, social): no page, carries the userId only."""
    __slots__ = ("day", "event", "feature", "props", "sec")

    def __init__(self, day: int, sec: int, event: str, props: dict, feature: str | None) -> None:
        self.day = day
        self.sec = sec
        self.event = event
        self.props = props
        self.feature = feature


def day_features(tables: SimulationTables, todays: list) -> dict[str, int]:
    """The scoring features of one day's sessions and server-side events."""
    counts: dict[str, int] = {}
    for unit in todays:
        if isinstance(unit, Session):
            add_counts(counts, unit.features(tables))
        elif unit.feature:
            counts[unit.feature] = counts.get(unit.feature, 0) + 1
    return counts
