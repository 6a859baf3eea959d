"""One contact's life, in the worker processes: web sessions, emails, social, signals, and the CRM's record.

The plan (world.py) fixes who a contact is, when it becomes an MQL and whether and when it becomes an SQL.
This module makes the behaviour that fits the plan under the funnel definition's own rules:

* before the planned MQL day (or for ever, when none is planned) each activity day is checked against an
  *upper bound* of the score (no decay, windows one day longer, no behavioural negatives); if the bound reaches
  the threshold, the day's scoring actions are toned down (pricing views become blog reads, downloads and extra
  sessions go), so no reading of the rules can make the contact an MQL early;
* on the planned MQL day a burst of decision-stage activity lifts a *lower bound* of the score (decayed one day
  more, windows one day shorter, every possible negative applied) over the threshold, so every reading agrees
  the contact is an MQL that day;
* decision signals (demo/pricing/audit requests, meetings booked) appear only on and after the planned SQL day.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, timedelta

import orjson

from handoff.funnel.operators import holds
from handoff.sample import vocab
from handoff.sample.config import CatalogEntry, Funnel
from handoff.sample.gzpieces import Piece, deflate_piece
from handoff.sample.world import (
    DAY_MS,
    S_BEHAVIOUR,
    S_VISITOR,
    Company,
    ContactPlan,
    World,
    cumulative,
    stream,
    weighted,
)

NL = orjson.OPT_APPEND_NEWLINE
dumps = orjson.dumps
LIB_WEB = {"name": "analytics.js", "version": "next-1.70.0"}
LIB_ESP = {"name": "analytics-python", "version": "2.3.2"}
HOUR = 3600
SESSION_HOURS = (7, 8, 9, 10, 10, 11, 12, 13, 14, 14, 15, 16, 17, 18, 19, 20, 21)


# -- per-process tables (set once by init_worker) -----------------------------------------------------------
@dataclass
class Page:
    path: str
    url: str
    title: str
    ctype: str
    stage: str


class Tables:
    def __init__(self, world: World, catalog: tuple[CatalogEntry, ...], max_events_per_file: int) -> None:
        self.world = world
        self.funnel: Funnel = world.funnel
        self.days = world.days
        self.end_ms = world.days * DAY_MS - 1
        self.max_events = max_events_per_file
        self.day_str = [(world.start + timedelta(days=d)).isoformat() + "T" for d in range(world.days + 2)]
        self.hms = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
        self.mss = [f".{ms:03d}Z" for ms in range(1000)]
        self.day_b = [d.encode() for d in self.day_str]
        self.hms_b = [x.encode() for x in self.hms]
        self.mss_b = [x.encode() for x in self.mss]
        self.tuesdays = [d for d in range(world.days) if (world.start + timedelta(days=d)).weekday() == 1]
        pages = [Page(p, vocab.SITE + p, t, "site", "") for p, t in vocab.SITE_PAGES]
        pages += [Page(e.path, vocab.SITE + e.path, e.title, e.content_type, e.buying_stage) for e in catalog]
        self.pages = pages
        # byte templates of a page event around the variable parts (see Emitter.emit_page)
        self.page_a = [b'","name":' + orjson.dumps(p.title) + b',"properties":{"path":' + orjson.dumps(p.path)
                       + b',"url":' + orjson.dumps(p.url) + b',"title":' + orjson.dumps(p.title) + b',"referrer":'
                       for p in pages]
        self.page_b = [b'},"context":{"page":{"path":' + orjson.dumps(p.path) + b',"url":' + orjson.dumps(p.url)
                       + b',"title":' + orjson.dumps(p.title) + b',"referrer":' for p in pages]
        self.url_j = [orjson.dumps(p.url) for p in pages]
        idx = {p.path: i for i, p in enumerate(pages)}
        self.page_idx = idx

        def of(pred) -> list[int]:
            return [i for i, p in enumerate(pages) if pred(p)]

        self.blog = of(lambda p: p.ctype == "blog")
        site = {p: idx[p] for p, _ in vocab.SITE_PAGES}
        self.aware = self.blog * 2 + [site["/"], site["/blog"], site["/product"], site["/resources"]]
        self.consider = of(lambda p: p.stage == "consideration") * 2 + [
            site["/product"], site["/product/lead-scoring"], site["/product/routing"], site["/integrations"],
            site["/customers"]] + self.blog[:4]
        self.pricing = of(lambda p: p.ctype == "pricing")
        self.comparison = of(lambda p: p.ctype == "comparison")
        self.decide = self.pricing * 3 + self.comparison + of(lambda p: p.stage == "decision" and p.ctype not in (
            "pricing", "comparison", "demo")) + [site["/security"], site["/product"], site["/customers"]]
        self.careers = of(lambda p: p.ctype == "careers")
        self.demo = of(lambda p: p.ctype == "demo") or [site["/"]]
        self.landing = [site["/"]] * 3 + self.blog
        self.modes = {"aware": self.aware, "consider": self.consider, "decide": self.decide,
                      "careers": self.careers}
        downloadable = ("ebook", "whitepaper", "webinar", "case_study")
        self.assets = {s: of(lambda p, s=s: p.ctype in downloadable and p.stage == s)
                       for s in ("awareness", "consideration", "decision")}
        for s in self.assets:
            if not self.assets[s]:
                self.assets[s] = of(lambda p: p.ctype in downloadable) or [site["/resources"]]
        self.scoring_pages = set(self.pricing) | set(self.comparison) | set(self.careers)
        # signal events from the funnel: sql.signals feature -> the event name mapped to it in `events`
        by_feature = {v: k for k, v in self.funnel.events.items()}
        weights = {name: w for name, w, _ in vocab.SIGNALS}
        forms = {name: f for name, _, f in vocab.SIGNALS}
        self.signals = tuple((by_feature[f], weights.get(by_feature[f], 10), forms.get(by_feature[f], ""), f)
                             for f in self.funnel.sql_signals if f in by_feature)
        self.signal_cum = cumulative(w for _, w, _, _ in self.signals)
        self.event_feature = dict(self.funnel.events)
        # scorer
        f = self.funnel
        self.count_rules = [(r.feature, int(r.window_days or 3650), r.points,
                             r.cap if r.cap is not None else math.inf) for r in f.count_rules]
        self.threshold_rules = [(r.feature, int(r.window_days or 3650), r.operator, r.value, r.points)
                                for r in f.threshold_rules]
        self.neg_rules = [(r.feature, r.operator, r.value, r.points) for r in f.behaviour_negative_rules
                          if r.feature != "days_since_last_activity"]
        self.max_window = max([w for _, w, _, _ in self.count_rules] + [w for _, w, *_ in self.threshold_rules]
                              + [1]) + 2
        hl = f.half_life_days
        self.decay = [0.5 ** (a / hl) if hl > 0 else 1.0 for a in range(self.max_window + world.days + 5)]
        self.count_by_feature: dict[str, list[tuple[int, int]]] = {}
        for i, (feat, win, _p, _c) in enumerate(self.count_rules):
            self.count_by_feature.setdefault(feat, []).append((i, win))
        self.repeat_window = max([w for ft, w, *_ in self.threshold_rules if ft == "repeat_visit_days"] + [0])
        self.threshold_points = sum(max(0.0, r[4]) for r in self.threshold_rules)


T: Tables | None = None


def init_worker(world: World, catalog: tuple[CatalogEntry, ...], max_events_per_file: int) -> None:
    global T
    T = Tables(world, catalog, max_events_per_file)


# -- units of behaviour ------------------------------------------------------------------------------------
class Sess:
    __slots__ = ("day", "sec", "pages", "offs", "actions", "campaign", "referrer", "mandatory", "identify_first",
                 "late")

    def __init__(self, day: int, sec: int) -> None:
        self.day = day
        self.sec = sec
        self.pages: list[int] = []
        self.offs: list[int] = []
        self.actions: list[tuple] = []  # (page position, kind, *args)
        self.campaign: dict | None = None
        self.referrer = ""
        self.mandatory = False
        self.identify_first = False
        self.late = False

    def add_page(self, rng: random.Random, page: int) -> int:
        self.offs.append(self.offs[-1] + 15 + int(rng.random() * 185) if self.offs else 0)
        self.pages.append(page)
        return len(self.pages) - 1

    def feats(self) -> dict[str, int]:
        t = T
        f = {"sessions": 1}
        for p in self.pages:
            if p in t.scoring_pages:
                ct = t.pages[p].ctype
                key = ("pricing_page_views" if ct == "pricing" else "comparison_page_views" if ct == "comparison"
                       else "careers_page_views")
                f[key] = f.get(key, 0) + 1
        for a in self.actions:
            kind = a[1]
            if kind == "form":
                f["form_submissions"] = f.get("form_submissions", 0) + 1
                if a[3] is not None:
                    key = "downloads_" + (t.pages[a[3]].stage or "awareness")
                    f[key] = f.get(key, 0) + 1
            elif kind == "download":
                key = "downloads_" + (t.pages[a[2]].stage or "awareness")
                f[key] = f.get(key, 0) + 1
            elif kind in ("signal", "job"):
                feat = t.event_feature.get(a[2])
                if feat:
                    f[feat] = f.get(feat, 0) + 1
                if len(a) > 3 and a[3]:
                    f["form_submissions"] = f.get("form_submissions", 0) + 1
        return f

    def end_sec(self) -> int:
        return self.sec + (self.offs[-1] if self.offs else 0) + 60


class Srv:
    """A server-side event (email, social): no page, carries the userId only."""
    __slots__ = ("day", "sec", "event", "props", "feature")

    def __init__(self, day: int, sec: int, event: str, props: dict, feature: str | None) -> None:
        self.day = day
        self.sec = sec
        self.event = event
        self.props = props
        self.feature = feature


# -- the scorer bounds ---------------------------------------------------------------------------------------
def _merge(a: dict, b: dict) -> None:
    for k, v in b.items():
        a[k] = a.get(k, 0) + v


def upper_bound(fit: float, hist: list, day: int, today: dict) -> float:
    """The highest score any reading of the rules gives (no decay, windows a day longer, no negatives)."""
    t = T
    acc = [0] * len(t.count_rules)
    by_feat = t.count_by_feature
    visit_days = 0
    rwin = t.repeat_window
    for d, f in (*hist, (day, today)):
        age = day - d
        for feat, n in f.items():
            for ri, win in by_feat.get(feat, ()):
                if age <= win:
                    acc[ri] += n
        if age <= rwin and "sessions" in f:
            visit_days += 1
    score = fit
    for (_feat, _win, pts, cap), n in zip(t.count_rules, acc, strict=True):
        if n:
            score += min(cap, pts * n)
    for feat, win, op, value, pts in t.threshold_rules:
        if pts <= 0:
            continue
        if feat == "repeat_visit_days":
            n = visit_days
        else:
            n = sum(f.get(feat, 0) for d, f in (*hist, (day, today)) if day - d <= win)
        if holds(op, n, value):
            score += pts
    return score


def quick_bound(fit: float, ever: dict, today: dict) -> float:
    """An even looser upper bound, from all-time counts: when it stays under the threshold, skip the rest."""
    t = T
    score = fit + t.threshold_points
    for feat, _win, pts, cap in t.count_rules:
        n = ever.get(feat, 0) + today.get(feat, 0)
        if n:
            score += min(cap, pts * n)
    return score


def lower_bound(fit: float, hist: list, day: int, today: dict, ever: dict) -> float:
    """The lowest score any reading gives (decayed a day more, windows a day shorter, every negative)."""
    t = T
    acc = [0.0] * len(t.count_rules)
    by_feat = t.count_by_feature
    decay = t.decay
    for d, f in (*hist, (day, today)):
        age = day - d
        w = decay[age + 1]
        for feat, n in f.items():
            for ri, win in by_feat.get(feat, ()):
                if age <= win - 2:
                    acc[ri] += n * w
    score = fit
    for (_feat, _win, pts, cap), n in zip(t.count_rules, acc, strict=True):
        if n:
            score += min(cap, pts * n)
    for feat, op, value, pts in t.neg_rules:
        if holds(op, ever.get(feat, 0) + today.get(feat, 0), value):
            score += min(0.0, pts)
    return score


# -- the contact ---------------------------------------------------------------------------------------------
@dataclass
class ContactOut:
    contact: bytes
    contact_row: list
    history_rows: list
    deals: list[bytes]
    deal_rows: list
    meetings: list[bytes]
    meeting_rows: list
    calls: list[bytes]
    call_rows: list
    truth_row: list
    events: list[tuple[int, bytes]]  # (received day, line)
    case: str
    mql_ok: bool
    will_mql: bool
    will_sql: bool


class ContactSim:
    def __init__(self, plan: ContactPlan) -> None:
        t = T
        self.p = plan
        self.rng = stream(t.world.seed, S_BEHAVIOUR, plan.idx)
        self.company: Company | None = t.world.companies[plan.company_k] if plan.company_k >= 0 else None
        self.units: list = []
        self.used_hours: dict[int, set[int]] = {}
        self.mql_ms = -1
        self.sql_ms = -1
        self.created_ms = plan.create_day * DAY_MS + plan.create_sec * 1000
        self.unsub_ms = -1
        self.bounce_ms = -1
        self.mql_ok = True
        self.signal_sess: Sess | None = None

    # -- helpers
    def hour_slot(self, day: int) -> int:
        """A start second for a new session that day, or -1 when the day is full. Sessions start in the first
        quarter of an hour and never in an hour next to another session's, so two sessions of one device are
        always more than 30 minutes apart and a 30-minute sessionization finds exactly the sessions made here."""
        rand = self.rng.random
        used = self.used_hours.setdefault(day, set())
        for _ in range(8):
            h = SESSION_HOURS[int(rand() * len(SESSION_HOURS))]
            if h not in used and h - 1 not in used and h + 1 not in used:
                used.add(h)
                return h * HOUR + int(rand() * 900)
        for h in range(7, 22):
            if h not in used and h - 1 not in used and h + 1 not in used:
                used.add(h)
                return h * HOUR + int(rand() * 900)
        return -1

    def make_session(self, day: int, mode: str, n_pages: int, sec: int | None = None) -> Sess | None:
        rand = self.rng.random
        if sec is None:
            sec = self.hour_slot(day)
            if sec < 0:
                return None
        s = Sess(day, sec)
        modes = T.modes
        pool = modes[mode]
        mixes = ("aware", "consider", "decide" if mode != "aware" else "aware")
        pages, offs = s.pages, s.offs
        off = 0
        for i in range(n_pages):
            if i:
                off += 15 + int(rand() * 185)
                if rand() < 0.25:
                    other = modes[mixes[int(rand() * 3)]]
                    pages.append(other[int(rand() * len(other))])
                    offs.append(off)
                    continue
            pages.append(pool[int(rand() * len(pool))])
            offs.append(off)
        return s

    def n_pages(self) -> int:
        return min(20, 1 + int(self.rng.expovariate(1 / (4.0 + 7.0 * self.p.intent))))

    def maybe_download(self, s: Sess, mode: str) -> None:
        rng, t, intent = self.rng, T, self.p.intent
        r = rng.random()
        stage = None
        if mode == "consider" and r < 0.14 + 0.22 * intent:
            stage = "consideration"
        elif mode == "decide" and r < 0.10 + 0.15 * intent:
            stage = "decision"
        elif mode == "aware" and r < 0.04 + 0.05 * intent:
            stage = "awareness"
        if stage is None:
            return
        asset = rng.choice(t.assets[stage])
        pos = s.add_page(rng, asset)
        if t.pages[asset].ctype == "case_study":
            s.actions.append((pos, "download", asset))
        else:
            s.actions.append((pos, "form", f"gated-{t.pages[asset].path.rsplit('/', 1)[-1]}", asset))

    # -- behaviour plan
    def build(self) -> None:
        p, rng, t = self.p, self.rng, T
        last = t.days - 1
        cd = p.create_day
        web = p.channel != "OFFLINE"
        camp = self.campaign()
        ref = vocab.SOURCE_REFERRER.get(p.source_data_1) or rng.choice(vocab.REFERRERS[p.channel])
        if web:
            n_pre = rng.choices((0, 1, 2, 3), (40, 30, 20, 10))[0] if p.kind != "applicant" else rng.randint(0, 2)
            pre_days = sorted({cd - 1 - int(rng.expovariate(1 / 5)) for _ in range(n_pre)})
            pre_days = [d for d in pre_days if d >= 0]
            for i, d in enumerate(pre_days):
                mode = "careers" if p.kind == "applicant" else "aware" if rng.random() < 0.7 else "consider"
                s = self.make_session(d, mode, self.n_pages())
                if s is None:
                    continue
                if i == 0:
                    s.campaign, s.referrer = camp, ref
                self.units.append(s)
            # the sign-up: a form fill (and its identify call) at create time
            sec = p.create_sec
            self.used_hours.setdefault(cd, set()).update((sec // HOUR - 1, sec // HOUR))
            s = Sess(cd, max(0, sec - rng.randint(60, 400)))
            if not pre_days:
                s.campaign, s.referrer = camp, ref
            s.mandatory = True
            if p.kind == "applicant":
                for _ in range(rng.randint(1, 3)):
                    s.add_page(rng, rng.choice(t.careers))
                pos = s.add_page(rng, rng.choice(t.careers))
                s.actions.append((pos, "job", "Job Application Submitted", "careers-application"))
            else:
                for _ in range(rng.randint(0, 2)):
                    s.add_page(rng, rng.choice(t.landing))
                if p.kind in ("student", "personal") or rng.random() < 0.3:
                    pos = s.add_page(rng, rng.choice(t.blog))
                    s.actions.append((pos, "form", "newsletter-signup", None))
                else:
                    stage = "consideration" if rng.random() < 0.55 else "awareness"
                    asset = rng.choice(t.assets[stage])
                    pos = s.add_page(rng, asset)
                    s.actions.append((pos, "form", f"gated-{t.pages[asset].path.rsplit('/', 1)[-1]}", asset))
            # make the form land exactly at the planned create time
            s.sec = max(0, sec - s.offs[-1] - 20)
            self.created_ms = cd * DAY_MS + (s.sec + s.offs[-1] + 20) * 1000 + 400
            self.units.append(s)

        if p.sql_day >= 0:
            self.sql_signal()  # first, so the signal's session has its slot that day
        # later visits
        d = cd
        intent = p.intent
        base = 0.03 + 0.34 * intent ** 1.3
        if p.kind == "competitor":
            base = 0.12
        elif p.kind in ("student", "applicant"):
            base = 0.04
        first_after = True
        while True:
            rate = base * max(0.3, math.exp(-(d - cd) / 80))
            if p.mql_day > cd and d < p.mql_day:
                rate *= 1.0 + 1.5 * (d - cd) / (p.mql_day - cd)
            if p.sql_day >= 0 and p.mql_day <= d < p.sql_day:
                rate = max(rate, 0.10 + 0.20 * intent)
            d += 1 + int(rng.expovariate(max(rate, 0.005)))
            if d > last:
                break
            for _ in range(1 + (rng.random() < 0.18) + (rng.random() < 0.05)):
                mode = self.pick_mode(d)
                s = self.make_session(d, mode, self.n_pages())
                if s is None:
                    break
                if first_after and not web:
                    s.identify_first = True
                    s.campaign = {"source": "newsletter", "medium": "email", "name": "event-follow-up"}
                first_after = False
                if rng.random() < 0.3:
                    s.referrer = rng.choice(("https://www.google.com/", "https://www.linkedin.com/"))
                self.maybe_download(s, mode)
                if rng.random() < 0.004 and not s.identify_first:
                    s.late = True
                self.units.append(s)
        self.emails(cd, last)
        self.social(cd, last)

    def campaign(self) -> dict | None:
        p, rng = self.p, self.rng
        if p.channel == "PAID_SEARCH":
            return {"source": p.source_data_1 or "google", "medium": "cpc",
                    "name": rng.choice(("brand", "lead-scoring-software", "mql-sql-tracking", "competitor-terms"))}
        if p.channel == "PAID_SOCIAL":
            return {"source": p.source_data_1 or "linkedin", "medium": "paid_social",
                    "name": rng.choice(("abm-q2", "webinar-promo", "ebook-scoring-playbook"))}
        if p.channel == "EMAIL_MARKETING":
            return {"source": p.source_data_1 or "newsletter", "medium": "email",
                    "name": rng.choice(("partner-roundup", "weekly-digest"))}
        return None

    def pick_mode(self, day: int) -> str:
        p, r = self.p, self.rng.random()
        if p.kind == "applicant":
            return "careers" if r < 0.7 else "aware"
        if p.kind == "student":
            return "aware" if r < 0.75 else "careers" if r < 0.85 else "consider"
        if p.kind == "competitor":
            return "decide" if r < 0.5 else "consider"
        if self.p.mql_day >= 0 and day >= self.p.mql_day:
            return "decide" if r < 0.25 + 0.3 * p.intent else "consider" if r < 0.75 else "aware"
        i = p.intent
        if r < 0.55 - 0.35 * i:
            return "aware"
        if r < 0.9 - 0.2 * i:
            return "consider"
        return "decide" if r < 0.985 else "careers"

    def emails(self, cd: int, last: int) -> None:
        p, rng, t = self.p, self.rng, T
        nurture = [cd + k for k in (1, 3, 7, 12, 18, 26, 35, 48, 62, 80, 100, 125, 150)]
        sends = sorted({(d, "newsletter") for d in t.tuesdays if d > cd} | {(d, "nurture") for d in nurture})
        p_open = 0.10 + 0.45 * p.intent + (0.08 if p.channel == "OFFLINE" else 0)
        p_click = 0.06 + 0.35 * p.intent
        bounce = p.kind == "business" and rng.random() < 0.025
        unsub_at = rng.randint(2, 14) if rng.random() < (0.10 - 0.08 * p.intent) else -1
        for n, (d, kind) in enumerate(sends):
            if d > last:
                break
            email_id = f"{kind}-{d:03d}" if kind == "newsletter" else f"nurture-{n:02d}"
            campaign = "weekly-newsletter" if kind == "newsletter" else "lead-nurture"
            send_sec = 14 * HOUR + rng.randrange(0, 900) if kind == "newsletter" else rng.randrange(9 * HOUR,
                                                                                                     17 * HOUR)
            if bounce:
                self.bounce_ms = self.add_srv(d, send_sec + 40, "Email Bounced",
                                              {"email_id": email_id, "campaign": campaign, "bounce_type": "hard"})
                return
            if rng.random() >= p_open:
                continue
            delay = int(rng.expovariate(1 / 5400))
            od, osec = d + (send_sec + delay) // 86400, (send_sec + delay) % 86400
            self.add_srv(od, osec, "Email Opened", {"email_id": email_id, "campaign": campaign})
            if rng.random() < 0.1:
                self.add_srv(od, min(86399, osec + rng.randint(300, 20000)), "Email Opened",
                             {"email_id": email_id, "campaign": campaign})
            if n == unsub_at:
                self.unsub_ms = self.add_srv(od, min(86399, osec + 30), "Unsubscribed",
                                             {"email_id": email_id, "campaign": campaign})
                return
            if rng.random() < p_click:
                csec = min(86399 - 4000, osec + rng.randint(5, 120))
                self.add_srv(od, csec, "Email Link Clicked", {"email_id": email_id, "campaign": campaign,
                                                              "link_url": vocab.SITE + "/blog"})
                used = self.used_hours.setdefault(od, set())
                h = csec // HOUR
                if od <= last and 6 <= h <= 21 and not used & {h - 1, h, h + 1}:
                    used.add(h)
                    s = self.make_session(od, "consider" if rng.random() < 0.5 else "aware",
                                          min(12, self.n_pages()), sec=csec + 2)
                    s.campaign = {"source": "hubspot", "medium": "email", "name": campaign}
                    self.units.append(s)

    def add_srv(self, day: int, sec: int, event: str, props: dict) -> int:
        self.units.append(Srv(day, sec, event, props, T.event_feature.get(event)))
        return day * DAY_MS + sec * 1000

    def social(self, cd: int, last: int) -> None:
        p, rng = self.p, self.rng
        n = int(rng.expovariate(1 / (0.2 + 2.5 * p.intent * p.intent)))
        for _ in range(n):
            d = rng.randint(cd, last)
            if d == cd:
                continue
            net = rng.choices(("linkedin", "twitter", "youtube"), (70, 20, 10))[0]
            self.add_srv(d, rng.randrange(7 * HOUR, 22 * HOUR), "Social Interaction",
                         {"network": net, "action": rng.choice(vocab.SOCIAL_ACTIONS),
                          "post_id": f"{net[:2]}-{rng.randint(1000, 9999)}"})

    def sql_signal(self) -> None:
        p, rng, t = self.p, self.rng, T
        if rng.random() < 0.15:
            p.sql_via = "CRM_UI"
            self.sql_ms = p.sql_day * DAY_MS + rng.randrange(9 * HOUR, 18 * HOUR) * 1000
            return
        name, _, form_id, _feat = weighted(rng, t.signal_cum, t.signals)
        p.sql_via = name
        s = Sess(p.sql_day, self.hour_slot(p.sql_day))
        if s.sec < 0:
            s.sec = 10 * HOUR
        for _ in range(rng.randint(0, 2)):
            s.add_page(rng, rng.choice(t.decide))
        page = t.pricing[0] if name == "Pricing Requested" and t.pricing else t.demo[0]
        pos = s.add_page(rng, page)
        s.actions.append((pos, "signal", name, form_id))
        s.mandatory = True
        self.units.append(s)
        self.signal_sess = s

    # -- the walk: keep the score where the plan says ---------------------------------------------------------
    def walk(self) -> None:
        p, t = self.p, T
        thr = t.funnel.mql_score_threshold
        by_day: dict[int, list] = {}
        for u in sorted(self.units, key=lambda u: (u.day, u.sec)):
            by_day.setdefault(u.day, []).append(u)
        if p.mql_day >= 0:
            by_day.setdefault(p.mql_day, [])
        hist: list = []
        ever: dict[str, int] = {}
        mql_day = p.mql_day
        done = not p.suppress and mql_day < 0
        final: list = []
        for day in sorted(by_day):
            todays = by_day[day]
            if not done and day >= p.create_day:
                if (mql_day < 0 or day < mql_day) and not self.suppress(day, todays, hist, ever, final):
                    # the fit and the sign-up alone cross the threshold: an MQL today (counted as a mismatch)
                    mql_day = day
                if day == mql_day:
                    self.burst(day, todays, hist, ever, thr)
                    done = True
            feats = _day_feats(todays)
            _merge(ever, feats)
            hist.append((day, feats))
            while hist and day - hist[0][0] > t.max_window:
                hist.pop(0)
            final.extend(todays)
        if mql_day != p.mql_day:
            self.mql_ok = False
            p.mql_day = mql_day
        self.units = final

    def suppress(self, day: int, todays: list, hist: list, ever: dict, final: list) -> bool:
        """Tone the day down until no reading of the rules puts the score at the threshold. False: cannot."""
        p, t = self.p, T
        thr = t.funnel.mql_score_threshold
        feats = _day_feats(todays)
        if quick_bound(p.fit, ever, feats) < thr or upper_bound(p.fit, hist, day, feats) < thr:
            return True
        # 1. decision pages become blog reads; downloads and optional forms go
        for u in todays:
            if isinstance(u, Sess):
                u.pages = [self.rng.choice(t.blog) if pg in t.scoring_pages else pg for pg in u.pages]
                if u.mandatory:
                    u.actions = [(pos, "form", "newsletter-signup", None) if kind == "form" else (pos, kind, *rest)
                                 for pos, kind, *rest in u.actions]
                else:
                    u.actions = []
        if upper_bound(p.fit, hist, day, _day_feats(todays)) < thr:
            return True
        # 2. drop email and social engagement, 3. then the optional sessions
        for kind in (Srv, Sess):
            for u in [u for u in todays if isinstance(u, kind) and not getattr(u, "mandatory", False)]:
                if isinstance(u, Srv) and u.event in ("Unsubscribed", "Email Bounced"):
                    continue
                todays.remove(u)
                if upper_bound(p.fit, hist, day, _day_feats(todays)) < thr:
                    return True
        # 4. on the sign-up day, forget the anonymous visits before it
        if day == p.create_day and hist:
            hist.clear()
            final[:] = [u for u in final if u.day >= p.create_day]
            if upper_bound(p.fit, hist, day, _day_feats(todays)) < thr:
                return True
        return False

    def burst(self, day: int, todays: list, hist: list, ever: dict, thr: float) -> None:
        """Decision-stage activity until even the lowest reading of the score reaches the threshold."""
        t, rng, p = T, self.rng, self.p
        if lower_bound(p.fit, hist, day, _day_feats(todays), ever) >= thr:
            self.mql_ms = max(self.created_ms, self._day_last_ms(day, todays))
            return
        signup = [u for u in todays if isinstance(u, Sess) and u.mandatory] if day == p.create_day else []
        sec = -1 if signup else self.hour_slot(day)
        if day == p.create_day and not signup:  # imported contact: after the import
            sec = max(sec, self.created_ms // 1000 % 86400 + 600)
            if sec > 22 * HOUR:
                sec = -1
        if sec >= 0:
            s = Sess(day, sec)
            s.mandatory = True
            s.add_page(rng, rng.choice(t.decide))
            todays.append(s)
            self.units.append(s)
        else:  # the sign-up session (or the day's last one) goes on to the decision pages
            s = (signup or sorted((u for u in todays if isinstance(u, Sess)), key=lambda u: u.sec) or [None])[-1]
            if s is None:
                s = Sess(day, max(0, min(22 * HOUR, self.created_ms // 1000 % 86400 + 60)))
                s.mandatory = True
                todays.append(s)
                self.units.append(s)
            s.add_page(rng, rng.choice(t.decide))
        steps = [("page", t.pricing), ("asset", "decision"), ("page", t.comparison), ("asset", "consideration"),
                 ("page", t.pricing), ("page", t.comparison), ("asset", "decision"), ("page", t.pricing),
                 ("page", t.comparison), ("asset", "consideration"), ("page", t.comparison)]
        for kind, arg in steps:
            if kind == "page" and arg:
                s.add_page(rng, rng.choice(arg))
            elif kind == "asset":
                asset = rng.choice(t.assets[arg])
                pos = s.add_page(rng, asset)
                s.actions.append((pos, "form", f"gated-{t.pages[asset].path.rsplit('/', 1)[-1]}", asset))
            if lower_bound(p.fit, hist, day, _day_feats(todays), ever) >= thr:
                break
        else:
            self.mql_ok = False
        self.mql_ms = day * DAY_MS + (s.sec + s.offs[-1] + 45) * 1000

    @staticmethod
    def _day_last_ms(day: int, todays: list) -> int:
        best = 0
        for u in todays:
            best = max(best, u.end_sec() if isinstance(u, Sess) else u.sec)
        return day * DAY_MS + min(best, 86399) * 1000


def _day_feats(todays: list) -> dict[str, int]:
    f: dict[str, int] = {}
    for u in todays:
        if isinstance(u, Sess):
            _merge(f, u.feats())
        elif u.feature:
            f[u.feature] = f.get(u.feature, 0) + 1
    return f


# -- serialization -------------------------------------------------------------------------------------------
class Emitter:
    """Turns units into Segment JSON lines, bucketed by the day they were received.

    Page views, most of the volume, are assembled from byte templates prepared once per page and per device;
    everything else goes through orjson. Both give plain JSON objects, one per line.
    """

    def __init__(self, rng: random.Random, anon: str | None, uid: str | None, ua: str, ip: str) -> None:
        self.rng = rng
        self.anon = anon
        self.uid = uid
        self.ua = ua
        self.ip = ip
        self.out: list[tuple[int, bytes]] = []
        self.anon_j = dumps(anon)
        self.uid_j = dumps(uid)
        self.ctx_tail = (b'},"userAgent":' + dumps(ua) + b',"ip":' + dumps(ip) + b',"library":' + dumps(LIB_WEB)
                         + b"}}\n")

    def ts(self, ms: int) -> str:
        t = T
        d, r = divmod(ms, DAY_MS)
        return t.day_str[d] + t.hms[r // 1000] + t.mss[r % 1000]

    def emit(self, ev: dict, ms: int, late: bool = False) -> None:
        t = T
        end = t.end_ms
        if ms > end:
            return
        rand = self.rng.random
        sent = ms + 5 + int(rand() * 1500)
        recv = sent + 20 + int(rand() * 900) if not late else ms + 3_600_000 + int(rand() * 104_400_000)
        if recv > end:
            return
        day_str, hms, mss = t.day_str, t.hms, t.mss
        d, r = divmod(ms, DAY_MS)
        ev["timestamp"] = day_str[d] + hms[r // 1000] + mss[r % 1000]
        d, r = divmod(sent, DAY_MS)
        ev["sentAt"] = day_str[d] + hms[r // 1000] + mss[r % 1000]
        d, r = divmod(recv, DAY_MS)
        ev["receivedAt"] = day_str[d] + hms[r // 1000] + mss[r % 1000]
        self.out.append((d, dumps(ev, option=NL)))

    def emit_page(self, pg: int, ms: int, ref_j: bytes, uid_j: bytes, late: bool) -> None:
        t = T
        end = t.end_ms
        if ms > end:
            return
        rng = self.rng
        rand = rng.random
        sent = ms + 5 + int(rand() * 1500)
        recv = sent + 20 + int(rand() * 900) if not late else ms + 3_600_000 + int(rand() * 104_400_000)
        if recv > end:
            return
        day_b, hms_b, mss_b = t.day_b, t.hms_b, t.mss_b
        d1, r1 = divmod(ms, DAY_MS)
        d2, r2 = divmod(sent, DAY_MS)
        d3, r3 = divmod(recv, DAY_MS)
        mid = b"%032x" % rng.getrandbits(128)  # noqa: UP031 (bytes have no f-strings)
        self.out.append((d3, b"".join((
            b'{"messageId":"ajs-', mid, b'","type":"page","anonymousId":', self.anon_j,
            b',"userId":', uid_j,
            b',"timestamp":"', day_b[d1], hms_b[r1 // 1000], mss_b[r1 % 1000],
            b'","sentAt":"', day_b[d2], hms_b[r2 // 1000], mss_b[r2 % 1000],
            b'","receivedAt":"', day_b[d3], hms_b[r3 // 1000], mss_b[r3 % 1000],
            t.page_a[pg], ref_j, t.page_b[pg], ref_j, self.ctx_tail))))

    def mid(self, prefix: str = "ajs-") -> str:
        return f"{prefix}{self.rng.getrandbits(128):032x}"

    def session(self, s: Sess, uid: str | None, traits: dict | None) -> str | None:
        """Emit a session; returns the userId in force afterwards (identify calls set it)."""
        t = T
        rand = self.rng.random
        base = s.day * DAY_MS + s.sec * 1000
        ref = s.referrer
        ref_j = dumps(ref)
        uid_j = dumps(uid)
        actions: dict[int, list] | None = None
        if s.actions:
            actions = {}
            for a in s.actions:
                actions.setdefault(a[0], []).append(a)
        if s.identify_first and traits is not None:
            uid = self.identify(base - 1500, traits, None)
            uid_j = dumps(uid)
        pages = t.pages
        for i, (pg, off) in enumerate(zip(s.pages, s.offs, strict=True)):
            ms = base + off * 1000 + int(rand() * 1000)
            if i == 0 and s.campaign:
                page = pages[pg]
                c = s.campaign
                props = {"path": page.path, "url": f"{page.url}?utm_source={c['source']}&utm_medium={c['medium']}"
                                                     f"&utm_campaign={c['name']}",
                         "title": page.title, "referrer": ref}
                ctx = {"page": props, "campaign": c, "userAgent": self.ua, "ip": self.ip, "library": LIB_WEB}
                self.emit({"messageId": self.mid(), "type": "page", "anonymousId": self.anon, "userId": uid,
                           "name": page.title, "properties": props, "context": ctx}, ms, late=s.late)
            else:
                self.emit_page(pg, ms, ref_j, uid_j, s.late)
            if actions is not None and i in actions:
                page = pages[pg]
                for a in actions[i]:
                    ams = ms + self.rng.randint(8, 40) * 1000
                    kind = a[1]
                    pctx = {"page": {"path": page.path, "url": page.url, "referrer": ref, "title": page.title},
                            "userAgent": self.ua, "ip": self.ip, "library": LIB_WEB}
                    if kind == "form" or (kind in ("signal", "job") and len(a) > 3 and a[3]):
                        form_id = a[2] if kind == "form" else a[3]
                        if traits is not None:
                            uid = self.identify(ams - 300, traits, pctx)
                            uid_j = dumps(uid)
                        self.track("Form Submitted", {"form_id": form_id, "page_path": page.path}, uid, pctx, ams)
                        if kind == "form" and a[3] is not None:
                            asset = pages[a[3]]
                            self.track("Content Downloaded", {"asset_path": asset.path, "title": asset.title,
                                                              "content_type": asset.ctype}, uid, pctx, ams + 700)
                    if kind == "download":
                        asset = pages[a[2]]
                        self.track("Content Downloaded", {"asset_path": asset.path, "title": asset.title,
                                                          "content_type": asset.ctype}, uid, pctx, ams + 700)
                    elif kind in ("signal", "job"):
                        self.track(a[2], {"page_path": page.path, "form_id": a[3] or None}, uid, pctx, ams + 900)
            ref = pages[pg].url
            ref_j = t.url_j[pg]
        return uid

    def track(self, name: str, props: dict, uid: str | None, ctx: dict, ms: int) -> None:
        self.emit({"messageId": self.mid(), "type": "track", "event": name, "anonymousId": self.anon,
                   "userId": uid, "properties": props, "context": ctx}, ms)

    def identify(self, ms: int, traits: dict, ctx: dict | None) -> str:
        c = dict(ctx) if ctx else {"userAgent": self.ua, "ip": self.ip, "library": LIB_WEB}
        c["traits"] = {"email": traits["email"]}
        self.emit({"messageId": self.mid(), "type": "identify", "anonymousId": self.anon, "userId": self.uid,
                   "traits": traits, "context": c}, ms)
        return self.uid  # type: ignore[return-value]

    def server(self, u: Srv, uid: str) -> None:
        ms = u.day * DAY_MS + u.sec * 1000 + self.rng.randrange(1000)
        self.emit({"messageId": self.mid("srv-"), "type": "track", "event": u.event, "anonymousId": None,
                   "userId": uid, "properties": u.props,
                   "context": {"userAgent": self.ua, "ip": self.ip, "library": LIB_ESP}}, ms)


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _ip(rng: random.Random) -> str:
    return f"{rng.choice((23, 34, 52, 66, 72, 81, 86, 91, 104, 151, 185, 203))}.{rng.randrange(256)}." \
           f"{rng.randrange(256)}.{rng.randrange(1, 255)}"


# -- CRM records for one contact -----------------------------------------------------------------------------
def simulate_contact(plan: ContactPlan) -> ContactOut:
    sim = ContactSim(plan)
    sim.build()
    sim.walk()
    p, rng = plan, sim.rng
    # events
    em = Emitter(rng, _uuid(rng), p.id, rng.choice(vocab.USER_AGENTS), _ip(rng))
    company = sim.company
    traits = {"email": p.email, "firstName": p.first, "lastName": p.last,
              "company": company.name if company else None}
    uid: str | None = None
    for u in sorted(sim.units, key=lambda u: (u.day, u.sec)):
        if isinstance(u, Sess):
            if uid is None and p.channel == "OFFLINE":
                u.identify_first = True  # imported at the event; the first visit comes from a tracked email link
            uid = em.session(u, uid, traits)
        else:
            em.server(u, p.id)
    if p.mql_day >= 0 and sim.mql_ms < 0:
        sim.mql_ms = p.mql_day * DAY_MS + 12 * HOUR * 1000
    if p.sql_day >= 0 and sim.sql_ms < 0:
        s = sim.signal_sess
        sim.sql_ms = (s.day * DAY_MS + (s.sec + s.offs[-1] + 40) * 1000) if s else p.sql_day * DAY_MS
    return crm_records(sim, em.out)


def crm_records(sim: ContactSim, events: list) -> ContactOut:
    t, p, rng = T, sim.p, sim.rng
    end = t.end_ms
    start = t.world.start
    w = t.world
    iso = _Iso(start)
    owner_id = p.owner_id
    team_smb = w.team_owners["SMB"] or w.owners
    if not owner_id and (p.mql_day >= 0 or p.sql_day >= 0):
        owner_id = team_smb[p.idx % len(team_smb)].id
    owner_user = {o.id: o for o in w.owners}
    created = sim.created_ms
    lifecycle: list[tuple[int, str, str, str | None, int | None]] = []
    status: list[tuple[int, str, str, str | None, int | None]] = []
    first_stage = ("other" if p.kind == "applicant" else "subscriber" if p.kind in ("student", "personal")
                   else "lead")
    src = "IMPORT" if p.channel == "OFFLINE" else "FORM"
    src_id = f"import-{p.source_data_1}-{p.create_day:03d}" if src == "IMPORT" else "signup-form"
    lifecycle.append((created, first_stage, src, src_id, None))
    status.append((created, "NEW", src, src_id, None))
    meetings: list[dict] = []
    calls: list[dict] = []
    deals: list[dict] = []
    case = "normal"
    will_sql = p.sql_day >= 0
    sql_ms = sim.sql_ms if will_sql else -1
    # planted CRM-only cases
    no_mql_business = (p.kind == "business" and p.mql_day < 0 and not p.disqualified and not p.converts)
    if no_mql_business and rng.random() < 0.03:
        d = p.create_day + rng.randint(2, 45)
        if d < t.days:
            case = "skipped_mql_crm_sql"
            will_sql = True
            p.sql_via = "CRM_UI"
            sql_ms = d * DAY_MS + rng.randrange(9 * HOUR, 18 * HOUR) * 1000
            owner_id = owner_id or team_smb[p.idx % len(team_smb)].id
    elif no_mql_business and rng.random() < 0.008:
        case = "deal_without_sql"
        owner_id = owner_id or team_smb[p.idx % len(team_smb)].id
    owner = owner_user.get(owner_id)

    def add_call(ms: int, title: str, inbound: bool = False) -> str | None:
        if ms > end or owner is None:
            return None
        disp = rng.choices(tuple(vocab.CALL_DISPOSITIONS), (55, 25, 15, 5))[0]
        n = len(calls)
        cid = str(50_000_000 + p.idx * 16 + n)
        calls.append({"id": cid, "ms": ms, "props": {
            "hs_timestamp": iso(ms), "hs_call_direction": "INBOUND" if inbound else "OUTBOUND",
            "hs_call_disposition": disp, "hs_call_title": title, "hubspot_owner_id": owner.id,
            "hs_createdate": iso(ms + 60_000), "hs_lastmodifieddate": iso(min(end, ms + 300_000))}})
        return disp

    def add_meeting(created_ms: int, at_ms: int, title: str) -> None:
        if at_ms > end or created_ms > end or owner is None:
            return
        outcome = ("SCHEDULED" if at_ms > end - 2 * DAY_MS else
                   rng.choices(("COMPLETED", "NO_SHOW", "CANCELED"), (72, 15, 13))[0])
        n = len(meetings)
        meetings.append({"id": str(40_000_000 + p.idx * 16 + n), "ms": created_ms, "props": {
            "hs_timestamp": iso(at_ms), "hs_meeting_title": title, "hs_meeting_outcome": outcome,
            "hubspot_owner_id": owner.id, "hs_createdate": iso(created_ms),
            "hs_lastmodifieddate": iso(min(end, max(created_ms, at_ms + 3_600_000)))}})

    company_name = sim.company.name if sim.company else f"{p.first} {p.last}"
    # SDR outreach to MQLs
    if p.mql_day >= 0 and sim.mql_ms >= 0 and rng.random() < 0.35:
        ms = sim.mql_ms + rng.randint(2 * HOUR, 5 * 24 * HOUR) * 1000
        if add_call(ms, "MQL outreach") is not None:
            status.append((ms, "IN_PROGRESS", "CRM_UI", owner.email if owner else None,
                           owner.user_id if owner else None))
    rejected = ""
    if will_sql and sql_ms >= 0 and sql_ms <= end:
        if p.sql_via == "CRM_UI":
            lifecycle.append((sql_ms, "salesqualifiedlead", "CRM_UI", owner.email if owner else None,
                              owner.user_id if owner else None))
        # the owner's follow-up: usually within hours, sometimes days
        r = rng.random()
        hours = rng.uniform(0.2, 4) if r < 0.55 else rng.uniform(4, 24) if r < 0.82 else rng.uniform(24, 80)
        if p.sql_via == "CRM_UI" and rng.random() < 0.5:
            hours = -rng.uniform(0.1, 1.5)  # the rep called, then set the stage
        call_ms = sql_ms + int(hours * 3_600_000)
        disp = add_call(call_ms, "SQL follow-up")
        if disp is not None:
            status.append((call_ms, "CONNECTED" if disp.startswith("f240") else "IN_PROGRESS", "CRM_UI",
                           owner.email if owner else None, owner.user_id if owner else None))
            if not disp.startswith("f240"):
                add_call(call_ms + rng.randint(20, 120) * 3_600_000, "SQL follow-up (retry)")
        if p.sql_via in ("Demo Requested", "Meeting Booked") or rng.random() < 0.5:
            mtg_at = sql_ms + rng.randint(1, 7) * DAY_MS + rng.randint(-3, 3) * 3_600_000
            add_meeting(sql_ms + (0 if p.sql_via == "Meeting Booked" else rng.randint(1, 30) * 3_600_000),
                        mtg_at, "Discovery call" if p.sql_via != "Demo Requested" else f"Demo: {company_name}")
        r = rng.random()
        if r < 0.10:
            rejected = "BAD_TIMING"
        elif r < 0.14:
            rejected = "UNQUALIFIED"
        if rejected:
            ms = sql_ms + rng.randint(1 * 24, 21 * 24) * 3_600_000
            if ms <= end:
                status.append((ms, rejected, "CRM_UI", owner.email if owner else None,
                               owner.user_id if owner else None))
                case = "sql_rejected_bad_timing" if rejected == "BAD_TIMING" else "sql_unqualified"
            else:
                rejected = ""
        elif sim.company is not None and rng.random() < 0.55:
            make_deal(sim, deals, lifecycle, sql_ms + rng.randint(2, 12) * DAY_MS, owner=owner, end=end, iso=iso)
    elif case == "normal" and p.kind == "business" and p.mql_day < 0 and rng.random() < 0.015:
        ms = created + rng.randint(3, 60) * DAY_MS
        if ms <= end:
            add_call(ms - 3_600_000, "Intro call")
            status.append((ms, "UNQUALIFIED", "CRM_UI", owner.email if owner else None,
                           owner.user_id if owner else None))
            case = "lead_unqualified"
    if case == "deal_without_sql":
        ms = created + rng.randint(5, 40) * DAY_MS
        if not make_deal(sim, deals, lifecycle, ms, owner=owner, end=end, iso=iso, force_won=True):
            case = "normal"
    # email status
    updates = [created] + [x[0] for x in lifecycle] + [x[0] for x in status]
    for ev_ms in (sim.unsub_ms, sim.bounce_ms):
        if 0 <= ev_ms <= end:
            updates.append(ev_ms + 5000)
    if owner_id and owner_id != p.owner_id:
        updates.append(max(created, sim.mql_ms if sim.mql_ms >= 0 else created))
    updates += [m["ms"] for m in meetings] + [c["ms"] for c in calls]
    updated = min(end, max(updates))
    lifecycle.sort(key=lambda x: x[0])
    status.sort(key=lambda x: x[0])
    props = {
        "email": p.email, "firstname": p.first, "lastname": p.last, "phone": p.phone or None,
        "jobtitle": p.jobtitle, "persona": p.persona, "company": sim.company.name if sim.company else None,
        "associatedcompanyid": sim.company.id if sim.company else None,
        "hubspot_owner_id": owner_id or None, "lifecyclestage": lifecycle[-1][1], "hs_lead_status": status[-1][1],
        "hs_analytics_source": p.channel, "hs_analytics_source_data_1": p.source_data_1 or None,
        "hs_email_optout": "true" if 0 <= sim.unsub_ms <= end else "false",
        "hs_email_bounce": "true" if 0 <= sim.bounce_ms <= end else "false",
        "createdate": iso(created), "lastmodifieddate": iso(updated), "hs_object_id": p.id,
        "handoff_score": None, "handoff_reasons": None, "handoff_sql_at": None,
    }
    contact = {"id": p.id, "properties": props, "createdAt": iso(created), "updatedAt": iso(updated),
               "archived": False, "propertiesWithHistory": {
                   "lifecyclestage": [_hist(iso, h) for h in reversed(lifecycle)],
                   "hs_lead_status": [_hist(iso, h) for h in reversed(status)]}}
    contact_row = [p.id, p.first, p.last, p.email, p.phone, p.jobtitle, p.persona, props["associatedcompanyid"] or "",
                   props["company"] or "", owner_id, props["lifecyclestage"], props["hs_lead_status"], p.channel,
                   p.source_data_1, props["hs_email_optout"], props["hs_email_bounce"], props["createdate"],
                   props["lastmodifieddate"]]
    history_rows = [[p.id, v, iso(ms), s, "" if u is None else str(u)] for ms, v, s, _, u in lifecycle]
    ref = {"results": [{"id": p.id, "type": "meeting_to_contact"}]}
    meeting_lines = [orjson.dumps({"id": m["id"], "properties": m["props"], "createdAt": m["props"]["hs_createdate"],
                                   "updatedAt": m["props"]["hs_lastmodifieddate"], "archived": False,
                                   "associations": {"contacts": ref}}, option=NL) for m in meetings]
    cref = {"results": [{"id": p.id, "type": "call_to_contact"}]}
    call_lines = [orjson.dumps({"id": c["id"], "properties": c["props"], "createdAt": c["props"]["hs_createdate"],
                                "updatedAt": c["props"]["hs_lastmodifieddate"], "archived": False,
                                "associations": {"contacts": cref}}, option=NL) for c in calls]
    deal_lines = [orjson.dumps({"id": d["id"], "properties": d["props"], "createdAt": d["props"]["createdate"],
                                "updatedAt": d["props"]["hs_lastmodifieddate"], "archived": False,
                                "associations": {
                                    "contacts": {"results": [{"id": p.id, "type": "deal_to_contact"}]},
                                    "companies": {"results": [{"id": sim.company.id, "type": "deal_to_company"}]}
                                    if sim.company else {"results": []}}}, option=NL) for d in deals]
    meeting_rows = [[m["id"], m["props"]["hs_timestamp"], m["props"]["hs_meeting_title"],
                     m["props"]["hs_meeting_outcome"], m["props"]["hubspot_owner_id"], m["props"]["hs_createdate"],
                     m["props"]["hs_lastmodifieddate"], p.id] for m in meetings]
    call_rows = [[c["id"], c["props"]["hs_timestamp"], c["props"]["hs_call_direction"],
                  c["props"]["hs_call_disposition"], c["props"]["hs_call_title"], c["props"]["hubspot_owner_id"],
                  c["props"]["hs_createdate"], c["props"]["hs_lastmodifieddate"], p.id] for c in calls]
    deal_rows = [[d["id"], d["props"]["dealname"], "default", d["props"]["dealstage"], d["props"]["amount"],
                  d["props"]["createdate"], d["props"]["closedate"] or "", d["props"]["hubspot_owner_id"],
                  d["props"]["hs_lastmodifieddate"], p.id, sim.company.id if sim.company else ""] for d in deals]
    will_mql = p.mql_day >= 0
    sql_in_window = will_sql and 0 <= sql_ms <= end
    mql_at = iso(sim.mql_ms) if will_mql else ""
    sql_at = iso(sql_ms) if sql_in_window else ""
    lag = ""
    if will_mql and sql_in_window:
        lag = str(sql_ms // DAY_MS - sim.mql_ms // DAY_MS)
    truth = [p.id, p.email, p.channel, p.persona, p.segment if sim.company else "Unknown",
             f"{p.intent:.3f}", _b(will_mql), _b(sql_in_window), mql_at, lag, sql_at,
             _b(p.kind == "competitor"), _b(p.kind == "applicant"), _b(p.domain_type == "personal")]
    return ContactOut(orjson.dumps(contact, option=NL), contact_row, history_rows, deal_lines, deal_rows,
                      meeting_lines, meeting_rows, call_lines, call_rows, truth, events, case, sim.mql_ok, will_mql,
                      sql_in_window)


def make_deal(sim: ContactSim, deals: list, lifecycle: list, created_ms: int, *, owner, end: int, iso,
              force_won: bool = False) -> bool:
    p, rng = sim.p, sim.rng
    if created_ms > end or owner is None or sim.company is None:
        return False
    seg = sim.company.segment
    lo, hi = vocab.DEAL_AMOUNT[seg]
    amount = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi))), -2))
    cycle = {"SMB": (10, 45), "Mid-Market": (25, 90), "Enterprise": (50, 160)}[seg]
    close_ms = created_ms + rng.randint(*cycle) * DAY_MS + rng.randint(0, 8) * 3_600_000
    won = force_won or rng.random() < 0.38
    if force_won and close_ms > end:
        close_ms = created_ms + rng.randint(3, 10) * DAY_MS
        if close_ms > end:
            return False
    lifecycle.append((created_ms, "opportunity", "DEALS", None, None))
    if close_ms <= end:
        stage = "closedwon" if won else "closedlost"
        if won:
            lifecycle.append((close_ms, "customer", "DEALS", None, None))
        closedate = iso(close_ms)
        modified = close_ms
    else:
        progress = (end - created_ms) / (close_ms - created_ms)
        stage = vocab.DEAL_OPEN_STAGES[min(4, int(progress * 5))]
        closedate = None
        modified = min(end, created_ms + int((end - created_ms) * rng.random()))
    did = str(30_000_000 + p.idx * 4 + len(deals))
    deals.append({"id": did, "props": {
        "dealname": f"{sim.company.name} — new business", "pipeline": "default", "dealstage": stage,
        "amount": str(amount), "createdate": iso(created_ms), "closedate": closedate,
        "hubspot_owner_id": owner.id, "hs_lastmodifieddate": iso(modified)}})
    return True


class _Iso:
    def __init__(self, start: date) -> None:
        self.start = start

    def __call__(self, ms: int) -> str:
        t = T
        d, r = divmod(ms, DAY_MS)
        s, m = divmod(r, 1000)
        return t.day_str[d] + t.hms[s] + t.mss[m]


def _hist(iso, h) -> dict:
    ms, value, source, source_id, user = h
    return {"value": value, "timestamp": iso(ms), "sourceType": source, "sourceId": source_id,
            "updatedByUserId": user}


def _b(v: bool) -> str:
    return "true" if v else "false"


# -- anonymous visitors who never identify ------------------------------------------------------------------
def simulate_visitor(v: int) -> list[tuple[int, bytes]]:
    t = T
    rng = stream(t.world.seed, S_VISITOR, v)
    em = Emitter(rng, _uuid(rng), None, rng.choice(vocab.USER_AGENTS), _ip(rng))
    sim = ContactSim.__new__(ContactSim)
    sim.rng = rng
    sim.used_hours = {}
    first = rng.randrange(t.days)
    chan = rng.choice(tuple(vocab.CHANNELS))
    n_days = 1 + int(rng.expovariate(1 / 1.6))
    day = first
    for i in range(n_days):
        if day >= t.days:
            break
        r = rng.random()
        mode = "aware" if r < 0.68 else "careers" if r < 0.8 else "consider" if r < 0.92 else "decide"
        s = ContactSim.make_session(sim, day, mode, min(16, 1 + int(rng.expovariate(1 / 3.4))))
        if s is None:
            break
        if i == 0:
            s.referrer = rng.choice(vocab.REFERRERS[chan])
        em.session(s, None, None)
        day += 1 + int(rng.expovariate(1 / 9))
    return em.out


# -- a chunk of work (runs in a worker) ----------------------------------------------------------------------
def run_chunk(args: tuple[list[ContactPlan], range]) -> dict:
    plans, visitors = args
    t = T
    by_day: dict[int, list[bytes]] = {}
    contacts, deals, meetings, calls = [], [], [], []
    rows: dict[str, list] = {"contacts": [], "history": [], "deals": [], "meetings": [], "calls": [], "truth": []}
    stats = {"mql_plan_mismatch": 0, "cases": {}, "channel": {}}
    for plan in plans:
        out = simulate_contact(plan)
        for day, line in out.events:
            by_day.setdefault(day, []).append(line)
        contacts.append(out.contact)
        deals += out.deals
        meetings += out.meetings
        calls += out.calls
        rows["contacts"].append(out.contact_row)
        rows["history"] += out.history_rows
        rows["deals"] += out.deal_rows
        rows["meetings"] += out.meeting_rows
        rows["calls"] += out.call_rows
        rows["truth"].append(out.truth_row)
        if not out.mql_ok:
            stats["mql_plan_mismatch"] += 1
        if out.case != "normal":
            stats["cases"].setdefault(out.case, []).append(plan.id)
        ch = stats["channel"].setdefault(plan.channel, [0, 0, 0])
        ch[0] += 1
        ch[1] += out.will_mql
        ch[2] += out.will_mql and out.will_sql
    for v in visitors:
        for day, line in simulate_visitor(v):
            by_day.setdefault(day, []).append(line)
    day_pieces: dict[int, list[Piece]] = {}
    mx = t.max_events
    for day, lines in by_day.items():
        day_pieces[day] = [deflate_piece(b"".join(lines[i:i + mx]), len(lines[i:i + mx]))
                           for i in range(0, len(lines), mx)]
    return {
        "events": day_pieces,
        "crm": {"contacts": deflate_piece(b"".join(contacts), len(contacts)),
                "deals": deflate_piece(b"".join(deals), len(deals)),
                "meetings": deflate_piece(b"".join(meetings), len(meetings)),
                "calls": deflate_piece(b"".join(calls), len(calls))},
        "rows": rows,
        "stats": stats,
    }
