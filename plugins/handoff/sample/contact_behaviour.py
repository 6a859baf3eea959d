"""What one contact does on the web and in its inbox, drawn from its plan: visits before and at sign-up, later
visits and downloads, e-mails, social interactions and the SQL signal. ``mql_timing`` then tones the days before
the planned MQL day down and lifts that day over the threshold.

Decision signals (demo/pricing/audit requests, meetings booked) appear only on and after the planned SQL day:
the one signal session (``sql_signal``) is placed on that day.
"""

from __future__ import annotations

import math
import random

from handoff.sample import vocab
from handoff.sample.activity import ServerEvent, Session
from handoff.sample.simulation_tables import SimulationTables
from handoff.sample.world import DAY_MS, S_BEHAVIOUR, Company, ContactPlan, stream, weighted

HOUR = 3600
SESSION_HOURS = (7, 8, 9, 10, 10, 11, 12, 13, 14, 14, 15, 16, 17, 18, 19, 20, 21)
NURTURE_DAYS_AFTER_SIGNUP = (1, 3, 7, 12, 18, 26, 35, 48, 62, 80, 100, 125, 150)
LAST_SECOND_OF_DAY = 86399


class SessionPlanner:
    """Sessions of one device: their start slots (one per hour, never in adjacent hours) and their pages."""

    def __init__(self, tables: SimulationTables, rng: random.Random) -> None:
        self.tables = tables
        self.rng = rng
        self.used_hours: dict[int, set[int]] = {}

    def hour_slot(self, day: int) -> int:
        """A start second for a new session that day, or -1 when the day is full. Sessions start in the first
        quarter of an hour and never in an hour next to another session's, so two sessions of one device are
        always more than 30 minutes apart and a 30-minute sessionization finds exactly the sessions made here."""
        rand = self.rng.random
        used = self.used_hours.setdefault(day, set())
        for _ in range(8):
            hour = SESSION_HOURS[int(rand() * len(SESSION_HOURS))]
            if hour not in used and hour - 1 not in used and hour + 1 not in used:
                used.add(hour)
                return hour * HOUR + int(rand() * 900)
        for hour in range(7, 22):
            if hour not in used and hour - 1 not in used and hour + 1 not in used:
                used.add(hour)
                return hour * HOUR + int(rand() * 900)
        return -1

    def make_session(self, day: int, mode: str, n_pages: int, sec: int | None = None) -> Session | None:
        rand = self.rng.random
        if sec is None:
            sec = self.hour_slot(day)
            if sec < 0:
                return None
        session = Session(day, sec)
        modes = self.tables.modes
        pool = modes[mode]
        mixes = ("aware", "consider", "decide" if mode != "aware" else "aware")
        pages, offsets = session.pages, session.offsets
        offset = 0
        for position in range(n_pages):
            if position:
                offset += 15 + int(rand() * 185)
                if rand() < 0.25:
                    other = modes[mixes[int(rand() * 3)]]
                    pages.append(other[int(rand() * len(other))])
                    offsets.append(offset)
                    continue
            pages.append(pool[int(rand() * len(pool))])
            offsets.append(offset)
        return session


class ContactBehaviour(SessionPlanner):
    """One contact's units of behaviour (sessions and server-side events) and the moments the CRM records."""

    def __init__(self, tables: SimulationTables, plan: ContactPlan) -> None:
        super().__init__(tables, stream(tables.world.seed, S_BEHAVIOUR, plan.index))
        self.plan = plan
        self.company: Company | None = tables.world.companies[plan.company_index] if plan.company_index >= 0 else None
        self.units: list = []
        self.mql_ms = -1
        self.sql_ms = -1
        self.created_ms = plan.create_day * DAY_MS + plan.create_sec * 1000
        self.unsubscribed_ms = -1
        self.bounced_ms = -1
        self.mql_ok = True
        self.signal_session: Session | None = None

    def n_pages(self) -> int:
        return min(20, 1 + int(self.rng.expovariate(1 / (4.0 + 7.0 * self.plan.intent))))

    def maybe_download(self, session: Session, mode: str) -> None:
        rng, tables, intent = self.rng, self.tables, self.plan.intent
        draw = rng.random()
        stage = None
        if mode == "consider" and draw < 0.14 + 0.22 * intent:
            stage = "consideration"
        elif mode == "decide" and draw < 0.10 + 0.15 * intent:
            stage = "decision"
        elif mode == "aware" and draw < 0.04 + 0.05 * intent:
            stage = "awareness"
        if stage is None:
            return
        asset = rng.choice(tables.assets[stage])
        position = session.add_page(rng, asset)
        if tables.pages[asset].content_type == "case_study":
            session.actions.append((position, "download", asset))
        else:
            session.actions.append((position, "form", gated_form_id(tables, asset), asset))

    # -- behaviour plan
    def build(self) -> None:
        plan, rng, tables = self.plan, self.rng, self.tables
        last_day = tables.days - 1
        create_day = plan.create_day
        campaign = self.campaign()
        referrer = vocab.SOURCE_REFERRER.get(plan.source_data_1) or rng.choice(vocab.REFERRERS[plan.channel])
        if plan.channel != "OFFLINE":
            self._visits_until_signup(campaign, referrer)
        if plan.sql_day >= 0:
            self.sql_signal()  # first, so the signal's session has its slot that day
        # later visits
        day = create_day
        intent = plan.intent
        base_rate = 0.03 + 0.34 * intent ** 1.3
        if plan.kind == "competitor":
            base_rate = 0.12
        elif plan.kind in ("student", "applicant"):
            base_rate = 0.04
        first_after = True
        while True:
            rate = base_rate * max(0.3, math.exp(-(day - create_day) / 80))
            if plan.mql_day > create_day and day < plan.mql_day:
                rate *= 1.0 + 1.5 * (day - create_day) / (plan.mql_day - create_day)
            if plan.sql_day >= 0 and plan.mql_day <= day < plan.sql_day:
                rate = max(rate, 0.10 + 0.20 * intent)
            day += 1 + int(rng.expovariate(max(rate, 0.005)))
            if day > last_day:
                break
            for _ in range(1 + (rng.random() < 0.18) + (rng.random() < 0.05)):
                mode = self.pick_mode(day)
                session = self.make_session(day, mode, self.n_pages())
                if session is None:
                    break
                if first_after and plan.channel == "OFFLINE":
                    session.identify_first = True
                    session.campaign = {"source": "newsletter", "medium": "email", "name": "event-follow-up"}
                first_after = False
                if rng.random() < 0.3:
                    session.referrer = rng.choice(("https://www.google.com/", "https://www.linkedin.com/"))
                self.maybe_download(session, mode)
                if rng.random() < 0.004 and not session.identify_first:
                    session.late = True
                self.units.append(session)
        self.emails(create_day, last_day)
        self.social(create_day, last_day)

    def _visits_until_signup(self, campaign: dict | None, referrer: str) -> None:
        """Anonymous visits before the sign-up, then the sign-up session whose form lands at the create time;
        the first of them carries the contact's campaign and referrer."""
        plan, rng, tables = self.plan, self.rng, self.tables
        create_day = plan.create_day
        n_before = (rng.choices((0, 1, 2, 3), (40, 30, 20, 10))[0] if plan.kind != "applicant"
                    else rng.randint(0, 2))
        days_before = sorted({create_day - 1 - int(rng.expovariate(1 / 5)) for _ in range(n_before)})
        days_before = [day for day in days_before if day >= 0]
        for visit_number, day in enumerate(days_before):
            mode = "careers" if plan.kind == "applicant" else "aware" if rng.random() < 0.7 else "consider"
            session = self.make_session(day, mode, self.n_pages())
            if session is None:
                continue
            if visit_number == 0:
                session.campaign, session.referrer = campaign, referrer
            self.units.append(session)
        # the sign-up: a form fill (and its identify call) at create time
        sec = plan.create_sec
        self.used_hours.setdefault(create_day, set()).update((sec // HOUR - 1, sec // HOUR))
        signup = Session(create_day, max(0, sec - rng.randint(60, 400)))
        if not days_before:
            signup.campaign, signup.referrer = campaign, referrer
        signup.mandatory = True
        if plan.kind == "applicant":
            for _ in range(rng.randint(1, 3)):
                signup.add_page(rng, rng.choice(tables.careers))
            position = signup.add_page(rng, rng.choice(tables.careers))
            signup.actions.append((position, "job", "Job Application Submitted", "careers-application"))
        else:
            for _ in range(rng.randint(0, 2)):
                signup.add_page(rng, rng.choice(tables.landing))
            if plan.kind in ("student", "personal") or rng.random() < 0.3:
                position = signup.add_page(rng, rng.choice(tables.blog))
                signup.actions.append((position, "form", "newsletter-signup", None))
            else:
                stage = "consideration" if rng.random() < 0.55 else "awareness"
                asset = rng.choice(tables.assets[stage])
                position = signup.add_page(rng, asset)
                signup.actions.append((position, "form", gated_form_id(tables, asset), asset))
        # make the form land exactly at the planned create time
        signup.sec = max(0, sec - signup.offsets[-1] - 20)
        self.created_ms = create_day * DAY_MS + (signup.sec + signup.offsets[-1] + 20) * 1000 + 400
        self.units.append(signup)

    def campaign(self) -> dict | None:
        plan, rng = self.plan, self.rng
        if plan.channel == "PAID_SEARCH":
            return {"source": plan.source_data_1 or "google", "medium": "cpc",
                    "name": rng.choice(("brand", "lead-scoring-software", "mql-sql-tracking", "competitor-terms"))}
        if plan.channel == "PAID_SOCIAL":
            return {"source": plan.source_data_1 or "linkedin", "medium": "paid_social",
                    "name": rng.choice(("abm-q2", "webinar-promo", "ebook-scoring-playbook"))}
        if plan.channel == "EMAIL_MARKETING":
            return {"source": plan.source_data_1 or "newsletter", "medium": "email",
                    "name": rng.choice(("partner-roundup", "weekly-digest"))}
        return None

    def pick_mode(self, day: int) -> str:
        plan, draw = self.plan, self.rng.random()
        if plan.kind == "applicant":
            return "careers" if draw < 0.7 else "aware"
        if plan.kind == "student":
            return "aware" if draw < 0.75 else "careers" if draw < 0.85 else "consider"
        if plan.kind == "competitor":
            return "decide" if draw < 0.5 else "consider"
        if plan.mql_day >= 0 and day >= plan.mql_day:
            return "decide" if draw < 0.25 + 0.3 * plan.intent else "consider" if draw < 0.75 else "aware"
        intent = plan.intent
        if draw < 0.55 - 0.35 * intent:
            return "aware"
        if draw < 0.9 - 0.2 * intent:
            return "consider"
        return "decide" if draw < 0.985 else "careers"

    def emails(self, create_day: int, last_day: int) -> None:
        plan, rng, tables = self.plan, self.rng, self.tables
        nurture = [create_day + k for k in NURTURE_DAYS_AFTER_SIGNUP]
        sends = sorted({(day, "newsletter") for day in tables.tuesdays if day > create_day}
                       | {(day, "nurture") for day in nurture})
        p_open = 0.10 + 0.45 * plan.intent + (0.08 if plan.channel == "OFFLINE" else 0)
        p_click = 0.06 + 0.35 * plan.intent
        bounces = plan.kind == "business" and rng.random() < 0.025
        unsubscribe_at = rng.randint(2, 14) if rng.random() < (0.10 - 0.08 * plan.intent) else -1
        for send_number, (day, kind) in enumerate(sends):
            if day > last_day:
                break
            email_id = f"{kind}-{day:03d}" if kind == "newsletter" else f"nurture-{send_number:02d}"
            campaign = "weekly-newsletter" if kind == "newsletter" else "lead-nurture"
            send_sec = (14 * HOUR + rng.randrange(0, 900) if kind == "newsletter"
                        else rng.randrange(9 * HOUR, 17 * HOUR))
            if bounces:
                self.bounced_ms = self.add_server_event(day, send_sec + 40, "Email Bounced", {
                    "email_id": email_id, "campaign": campaign, "bounce_type": "hard"})
                return
            if rng.random() >= p_open:
                continue
            delay = int(rng.expovariate(1 / 5400))
            open_day, open_sec = day + (send_sec + delay) // 86400, (send_sec + delay) % 86400
            self.add_server_event(open_day, open_sec, "Email Opened", {"email_id": email_id, "campaign": campaign})
            if rng.random() < 0.1:
                self.add_server_event(open_day, min(LAST_SECOND_OF_DAY, open_sec + rng.randint(300, 20000)),
                                      "Email Opened", {"email_id": email_id, "campaign": campaign})
            if send_number == unsubscribe_at:
                self.unsubscribed_ms = self.add_server_event(
                    open_day, min(LAST_SECOND_OF_DAY, open_sec + 30), "Unsubscribed",
                    {"email_id": email_id, "campaign": campaign})
                return
            if rng.random() < p_click:
                click_sec = min(LAST_SECOND_OF_DAY - 4000, open_sec + rng.randint(5, 120))
                self.add_server_event(open_day, click_sec, "Email Link Clicked", {
                    "email_id": email_id, "campaign": campaign, "link_url": vocab.SITE + "/blog"})
                used = self.used_hours.setdefault(open_day, set())
                hour = click_sec // HOUR
                if open_day <= last_day and 6 <= hour <= 21 and not used & {hour - 1, hour, hour + 1}:
                    used.add(hour)
                    session = self.make_session(open_day, "consider" if rng.random() < 0.5 else "aware",
                                                min(12, self.n_pages()), sec=click_sec + 2)
                    session.campaign = {"source": "hubspot", "medium": "email", "name": campaign}
                    self.units.append(session)

    def add_server_event(self, day: int, sec: int, event: str, props: dict) -> int:
        self.units.append(ServerEvent(day, sec, event, props, self.tables.event_feature.get(event)))
        return day * DAY_MS + sec * 1000

    def social(self, create_day: int, last_day: int) -> None:
        plan, rng = self.plan, self.rng
        n_interactions = int(rng.expovariate(1 / (0.2 + 2.5 * plan.intent * plan.intent)))
        for _ in range(n_interactions):
            day = rng.randint(create_day, last_day)
            if day == create_day:
                continue
            network = rng.choices(("linkedin", "twitter", "youtube"), (70, 20, 10))[0]
            self.add_server_event(day, rng.randrange(7 * HOUR, 22 * HOUR), "Social Interaction", {
                "network": network, "action": rng.choice(vocab.SOCIAL_ACTIONS),
                "post_id": f"{network[:2]}-{rng.randint(1000, 9999)}"})

    def sql_signal(self) -> None:
        plan, rng, tables = self.plan, self.rng, self.tables
        if rng.random() < 0.15:
            plan.sql_via = "CRM_UI"
            self.sql_ms = plan.sql_day * DAY_MS + rng.randrange(9 * HOUR, 18 * HOUR) * 1000
            return
        name, _, form_id, _feature = weighted(rng, tables.signal_cumulative_weights, tables.signals)
        plan.sql_via = name
        session = Session(plan.sql_day, self.hour_slot(plan.sql_day))
        if session.sec < 0:
            session.sec = 10 * HOUR
        for _ in range(rng.randint(0, 2)):
            session.add_page(rng, rng.choice(tables.decide))
        page = tables.pricing[0] if name == "Pricing Requested" and tables.pricing else tables.demo[0]
        position = session.add_page(rng, page)
        session.actions.append((position, "signal", name, form_id))
        session.mandatory = True
        self.units.append(session)
        self.signal_session = session


def gated_form_id(tables: SimulationTables, asset: int) -> str:
    """The form in front of a gated asset: 'gated-' and the last part of the asset's path."""
    return f"gated-{tables.pages[asset].path.rsplit('/', 1)[-1]}"
