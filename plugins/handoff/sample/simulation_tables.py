"""The lookup tables every simulated contact reads: pages and their byte templates, the page pools of each
browsing mode, the signal events, the scoring rules in the shape the score bounds use, and timestamp pieces.

Built once per worker process from the world and the content catalog (``SimulationTables(world, catalog,
max_events_per_file)``) and passed to everything that simulates; nothing here changes after it is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

import orjson

from handoff.sample import vocab
from handoff.sample.config import CatalogEntry, Funnel
from handoff.sample.world import DAY_MS, World, cumulative

DOWNLOADABLE_TYPES = ("ebook", "whitepaper", "webinar", "case_study")
NO_WINDOW_DAYS = 3650  # a rule without a window counts (practically) for ever


@dataclass
class Page:
    path: str
    url: str
    title: str
    content_type: str
    buying_stage: str


class SimulationTables:
    def __init__(self, world: World, catalog: tuple[CatalogEntry, ...], max_events_per_file: int) -> None:
        self.world = world
        self.funnel: Funnel = world.funnel
        self.days = world.days
        self.end_ms = world.days * DAY_MS - 1
        self.max_events = max_events_per_file
        self._init_timestamp_pieces(world)
        self.tuesdays = [day for day in range(world.days) if (world.start + timedelta(days=day)).weekday() == 1]
        self._init_pages(catalog)
        self._init_signals()
        self._init_scoring_rules()

    def _init_timestamp_pieces(self, world: World) -> None:
        """'YYYY-MM-DDT' per day of the window, 'HH:MM:SS' per second of a day, '.mmmZ' per millisecond."""
        self.day_prefixes = [(world.start + timedelta(days=day)).isoformat() + "T" for day in range(world.days + 2)]
        self.clock_times = [f"{hour:02d}:{minute:02d}:{second:02d}"
                            for hour in range(24) for minute in range(60) for second in range(60)]
        self.millisecond_suffixes = [f".{millis:03d}Z" for millis in range(1000)]
        self.day_prefix_bytes = [text.encode() for text in self.day_prefixes]
        self.clock_time_bytes = [text.encode() for text in self.clock_times]
        self.millisecond_suffix_bytes = [text.encode() for text in self.millisecond_suffixes]

    def _init_pages(self, catalog: tuple[CatalogEntry, ...]) -> None:
        pages = [Page(path, vocab.SITE + path, title, "site", "") for path, title in vocab.SITE_PAGES]
        pages += [Page(entry.path, vocab.SITE + entry.path, entry.title, entry.content_type, entry.buying_stage)
                  for entry in catalog]
        self.pages = pages
        # byte templates of a page event around the variable parts (see EventEmitter.emit_page)
        self.page_event_head = [
            b'","name":' + orjson.dumps(p.title) + b',"properties":{"path":' + orjson.dumps(p.path)
            + b',"url":' + orjson.dumps(p.url) + b',"title":' + orjson.dumps(p.title) + b',"referrer":'
            for p in pages]
        self.page_event_context = [
            b'},"context":{"page":{"path":' + orjson.dumps(p.path) + b',"url":' + orjson.dumps(p.url)
            + b',"title":' + orjson.dumps(p.title) + b',"referrer":' for p in pages]
        self.page_url_json = [orjson.dumps(p.url) for p in pages]
        self.page_index = {p.path: i for i, p in enumerate(pages)}

        def pages_where(predicate) -> list[int]:
            return [i for i, p in enumerate(pages) if predicate(p)]

        self.blog = pages_where(lambda p: p.content_type == "blog")
        site = {path: self.page_index[path] for path, _ in vocab.SITE_PAGES}
        self.aware = self.blog * 2 + [site["/"], site["/blog"], site["/product"], site["/resources"]]
        self.consider = pages_where(lambda p: p.buying_stage == "consideration") * 2 + [
            site["/product"], site["/product/lead-scoring"], site["/product/routing"], site["/integrations"],
            site["/customers"]] + self.blog[:4]
        self.pricing = pages_where(lambda p: p.content_type == "pricing")
        self.comparison = pages_where(lambda p: p.content_type == "comparison")
        self.decide = self.pricing * 3 + self.comparison + pages_where(
            lambda p: p.buying_stage == "decision" and p.content_type not in ("pricing", "comparison", "demo")) + [
            site["/security"], site["/product"], site["/customers"]]
        self.careers = pages_where(lambda p: p.content_type == "careers")
        self.demo = pages_where(lambda p: p.content_type == "demo") or [site["/"]]
        self.landing = [site["/"]] * 3 + self.blog
        self.modes = {"aware": self.aware, "consider": self.consider, "decide": self.decide,
                      "careers": self.careers}
        self.assets = {stage: pages_where(lambda p, stage=stage: p.content_type in DOWNLOADABLE_TYPES
                                          and p.buying_stage == stage)
                       for stage in ("awareness", "consideration", "decision")}
        for stage in self.assets:
            if not self.assets[stage]:
                self.assets[stage] = (pages_where(lambda p: p.content_type in DOWNLOADABLE_TYPES)
                                      or [site["/resources"]])
        self.scoring_pages = set(self.pricing) | set(self.comparison) | set(self.careers)

    def _init_signals(self) -> None:
        """Signal events from the funnel: each sql.signals feature -> the event name mapped to it in `events`."""
        event_by_feature = {feature: event for event, feature in self.funnel.events.items()}
        weights = {name: weight for name, weight, _ in vocab.SIGNALS}
        forms = {name: form_id for name, _, form_id in vocab.SIGNALS}
        self.signals = tuple((event_by_feature[feature], weights.get(event_by_feature[feature], 10),
                              forms.get(event_by_feature[feature], ""), feature)
                             for feature in self.funnel.sql_signals if feature in event_by_feature)
        self.signal_cumulative_weights = cumulative(weight for _, weight, _, _ in self.signals)
        self.event_feature = dict(self.funnel.events)

    def _init_scoring_rules(self) -> None:
        funnel = self.funnel
        self.count_rules = [(r.feature, int(r.window_days or NO_WINDOW_DAYS), r.points,
                             r.cap if r.cap is not None else math.inf) for r in funnel.count_rules]
        self.threshold_rules = [(r.feature, int(r.window_days or NO_WINDOW_DAYS), r.operator, r.value, r.points)
                                for r in funnel.threshold_rules]
        self.negative_rules = [(r.feature, r.operator, r.value, r.points) for r in funnel.behaviour_negative_rules
                               if r.feature != "days_since_last_activity"]
        self.max_window = max([window for _, window, _, _ in self.count_rules]
                              + [window for _, window, *_ in self.threshold_rules] + [1]) + 2
        half_life = funnel.half_life_days
        self.decay = [0.5 ** (age / half_life) if half_life > 0 else 1.0
                      for age in range(self.max_window + self.days + 5)]
        self.count_rules_by_feature: dict[str, list[tuple[int, int]]] = {}
        for index, (feature, window, _points, _cap) in enumerate(self.count_rules):
            self.count_rules_by_feature.setdefault(feature, []).append((index, window))
        self.repeat_visit_window = max([window for feature, window, *_ in self.threshold_rules
                                        if feature == "repeat_visit_days"] + [0])
        self.threshold_points = sum(max(0.0, rule[4]) for rule in self.threshold_rules)

    def timestamp(self, at_ms: int) -> str:
        """An ISO-8601 UTC timestamp with milliseconds for a time in ms since the window's start."""
        day, millis_of_day = divmod(at_ms, DAY_MS)
        second, millis = divmod(millis_of_day, 1000)
        return self.day_prefixes[day] + self.clock_times[second] + self.millisecond_suffixes[millis]
