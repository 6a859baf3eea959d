"""The company's static side, planned in the parent process: owners, companies and who each contact is.

Everything here is drawn from per-object random streams (``stream(seed, kind, index)``), so an object's
attributes do not depend on how many others were drawn before it. The one global step is the MQL→SQL draw:
the planned MQLs of each channel, in contact order, take their conversion draw from a golden-ratio sequence,
so the share that converts lands within a few contacts of the planted propensity even at 5,000 contacts.
"""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from handoff.sample import vocab
from handoff.sample.config import Funnel

DAY_MS = 86_400_000
CONTACT_ID_BASE = 150_001
COMPANY_ID_BASE = 20_000_001
OWNER_ID_BASE = 70_000_101
OWNER_USER_ID_BASE = 9_100_001
GOLDEN = 0.6180339887498949

# random streams
S_OWNER, S_COMPANY, S_CONTACT, S_BEHAVIOUR, S_VISITOR = range(5)


class Rng(random.Random):
    """random.Random with cheaper choice/randint/randrange (float-based; the bias is far below any use here)."""

    def choice(self, seq):  # type: ignore[override]
        return seq[int(self.random() * len(seq))]

    def randint(self, a: int, b: int) -> int:  # type: ignore[override]
        return a + int(self.random() * (b - a + 1))

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:  # type: ignore[override]
        if stop is None:
            return int(self.random() * start)
        return start + int(self.random() * (stop - start))


def stream(seed: int, kind: int, index: int) -> Rng:
    return Rng((seed * 8 + kind) * 4_294_967_296 + index)


def weighted(rng: random.Random, cum: list[float], items: tuple) -> object:
    return items[bisect(cum, rng.random() * cum[-1])]


def cumulative(weights) -> list[float]:
    return list(itertools.accumulate(weights))


@dataclass(slots=True)
class Owner:
    id: str
    user_id: int
    first: str
    last: str
    email: str
    team: str
    team_id: str
    created_ms: int  # ms relative to the window start (may be negative)
    updated_ms: int


@dataclass(slots=True)
class Company:
    index: int
    id: str
    name: str
    domain: str
    industry: str
    employees: int
    revenue: int
    web_visitors: int
    technologies: tuple[str, ...]
    cms: str
    country: str
    dial: str
    band: str
    segment: str
    owner_id: str
    created_ms: int
    updated_ms: int
    is_competitor: bool = False


@dataclass(slots=True)
class ContactPlan:
    index: int
    id: str
    first: str
    last: str
    email: str
    phone: str
    jobtitle: str
    persona: str
    kind: str  # business | personal | student | applicant | competitor
    domain_type: str  # business | personal | competitor
    company_index: int  # -1: none
    segment: str
    channel: str
    source_data_1: str
    create_day: int
    create_sec: int
    intent: float
    fit: float
    fit_positive: float
    disqualified: bool
    suppress: bool  # keep the score under the threshold until the planned MQL day
    owner_id: str
    mql_day: int = -1  # planned MQL day (-1: none within the window)
    forced_mql: bool = False  # the fit plus the sign-up alone cross the threshold
    converts: bool = False
    sql_day: int = -1  # -1: no SQL within the window (or none at all)
    sql_via: str = ""  # a signal event name, or CRM_UI
    lag_days: int = -1
    extra: dict = field(default_factory=dict)


@dataclass
class World:
    seed: int
    days: int
    start: date
    end: date
    funnel: Funnel
    owners: list[Owner]
    companies: list[Company]
    team_owners: dict[str, list[Owner]]


def build_world(seed: int, contacts: int, days: int, end: date, funnel: Funnel) -> World:
    start = end - timedelta(days=days - 1)
    owners = _owners(seed, contacts)
    team_owners: dict[str, list[Owner]] = {t: [o for o in owners if o.team == t] for t, _ in vocab.TEAMS}
    companies = _companies(seed, contacts, funnel, team_owners, days)
    return World(seed, days, start, end, funnel, owners, companies, team_owners)


def _owners(seed: int, contacts: int) -> list[Owner]:
    owner_count = max(5, round(contacts / 250))
    counts = [max(1, round(owner_count * share)) for share in vocab.TEAM_SHARE]
    counts[0] += owner_count - sum(counts)
    owners = []
    used = set()
    owner_number = 0
    for (team, team_id), count in zip(vocab.TEAMS, counts, strict=True):
        for _ in range(count):
            rng = stream(seed, S_OWNER, owner_number)
            while True:
                first, last = rng.choice(vocab.FIRST), rng.choice(vocab.LAST)
                if (first, last) not in used:
                    used.add((first, last))
                    break
            email = f"{first}.{last}".lower().replace(" ", "").replace("'", "") + f"@{vocab.OWN_DOMAIN}"
            created = -rng.randint(60, 900) * DAY_MS + rng.randint(8, 17) * 3_600_000
            owners.append(Owner(str(OWNER_ID_BASE + owner_number), OWNER_USER_ID_BASE + owner_number, first, last,
                                email, team, team_id, created, created + rng.randint(1, 50) * DAY_MS))
            owner_number += 1
    return owners


def _companies(seed: int, contacts: int, funnel: Funnel, team_owners: dict[str, list[Owner]],
               days: int) -> list[Company]:
    company_count = max(40, contacts // 3)
    ind_cum = cumulative(w for _, w in vocab.INDUSTRIES)
    ind_items = tuple(i for i, _ in vocab.INDUSTRIES)
    size_cum = cumulative(s for *_, s in vocab.COMPANY_SIZES)
    cms_cum = cumulative(w for _, w in vocab.CMS)
    cms_items = tuple(c for c, _ in vocab.CMS)
    ctry_cum = cumulative(w for _, w, _ in vocab.COUNTRIES)
    ctry_items = tuple((c, d) for c, _, d in vocab.COUNTRIES)
    names: set[str] = set()  # names and domains taken
    out = []
    for company_number in range(company_count):
        rng = stream(seed, S_COMPANY, company_number)
        smallest, largest, _ = vocab.COMPANY_SIZES[bisect(size_cum, rng.random() * size_cum[-1])]
        employees = int(math.exp(rng.uniform(math.log(smallest), math.log(largest + 1))))
        industry = weighted(rng, ind_cum, ind_items)
        name, domain = _company_name(rng, names, company_number)
        country, dial = weighted(rng, ctry_cum, ctry_items)
        revenue_per_employee = vocab.REVENUE_PER_EMPLOYEE.get(industry, 140_000) * rng.lognormvariate(0, 0.35)
        revenue = int(round(employees * revenue_per_employee, -3))
        visitors = int(round(employees * rng.lognormvariate(math.log(12), 0.9) + rng.randint(50, 1500), -1))
        cms = weighted(rng, cms_cum, cms_items)
        tools = tuple(sorted(rng.sample(vocab.WEB_TOOLS, rng.randint(1, 4))))
        out.append(_company(funnel, team_owners, company_number, name, domain, industry=industry, employees=employees,
                            revenue=revenue, visitors=visitors, cms=cms, tools=tools, country=country, dial=dial,
                            rng=rng, days=days))
    # the competitors, one company per competitor domain from config/funnel.yml
    for domain in funnel.lists["competitor_domains"]:
        company_number = len(out)
        rng = stream(seed, S_COMPANY, company_number)
        name = domain.split(".")[0].capitalize()
        out.append(_company(funnel, team_owners, company_number, name, domain, industry="COMPUTER_SOFTWARE",
                            employees=rng.randint(60, 400), revenue=rng.randint(8, 40) * 1_000_000,
                            visitors=rng.randint(30_000, 120_000), cms="webflow",
                            tools=("google_analytics", "segment"), country="United States", dial="+1", rng=rng,
                            days=days, competitor=True))
    return out


def _company_name(rng: random.Random, taken: set[str], number: int) -> tuple[str, str]:
    """A unique company name and web domain ("Harbor Logistics", "harborlogistics.com")."""
    first_words, second_words = vocab.NAME_A, vocab.NAME_B
    for attempt in range(40):
        if attempt < 4:
            name = f"{rng.choice(first_words)} {rng.choice(second_words)}"
        else:
            name = f"{rng.choice(first_words)}{rng.choice(first_words).lower()} {rng.choice(second_words)}"
        domain = name.lower().replace(" ", "") + rng.choice((".com", ".com", ".com", ".io", ".co"))
        if name not in taken and domain not in taken:
            break
    else:
        name = f"{rng.choice(first_words)} {rng.choice(second_words)} {number}"
        domain = name.lower().replace(" ", "-") + ".com"
    taken.add(name)
    taken.add(domain)
    return name, domain


def _company(funnel, team_owners, number, name, domain, *, industry, employees, revenue, visitors, cms, tools, country,
             dial, rng, days, competitor=False) -> Company:
    band = funnel.size_band(employees)
    segment = vocab.BAND_SEGMENT.get(band, "SMB")
    team = team_owners[segment] or next(v for v in team_owners.values() if v)
    owner = team[rng.randrange(len(team))]
    created = -rng.randint(1, 700) * DAY_MS + rng.randint(7, 19) * 3_600_000 + rng.randint(0, 3_599_999)
    updated = created + rng.randint(0, 400) * DAY_MS
    updated = min(updated, days * DAY_MS - rng.randint(1, 30) * DAY_MS)
    return Company(number, str(COMPANY_ID_BASE + number), name, domain, industry, employees, revenue, visitors,
                   tuple(sorted({cms, *tools})), cms, country, dial, band, segment, owner.id, created,
                   max(created, updated), competitor)


def company_attrs(world: World, c: Company | None, persona: str, domain_type: str) -> dict:
    if c is None:
        return {"persona": persona, "email_domain_type": domain_type}
    return {"company_size_band": c.band, "industry": c.industry, "annual_revenue": c.revenue,
            "monthly_web_visitors": c.web_visitors, "cms": list(c.technologies), "persona": persona,
            "email_domain_type": domain_type, "country": c.country}


# -- contacts ------------------------------------------------------------------------------------------------
def plan_contacts(world: World, contacts: int) -> list[ContactPlan]:
    seed, funnel = world.seed, world.funnel
    chan_items = tuple(vocab.CHANNELS)
    chan_cum = cumulative(v[0] for v in vocab.CHANNELS.values())
    pers_items = tuple(p for p, _ in vocab.PERSONAS)
    pers_cum = cumulative(w for _, w in vocab.PERSONAS)
    regular = [c for c in world.companies if not c.is_competitor]
    competitors = [c for c in world.companies if c.is_competitor]
    comp_cum = cumulative(1.0 + 1.4 * math.log10(c.employees) for c in regular)
    emails: set[str] = set()
    plans = []
    for number in range(contacts):
        rng = stream(seed, S_CONTACT, number)
        kind_draw = rng.random()
        kind = ("competitor" if kind_draw < 0.012 else "applicant" if kind_draw < 0.037
                else "student" if kind_draw < 0.067 else "personal" if kind_draw < 0.165 else "business")
        first, last = rng.choice(vocab.FIRST), rng.choice(vocab.LAST)
        company: Company | None = None
        if kind == "business":
            company = regular[bisect(comp_cum, rng.random() * comp_cum[-1])]
        elif kind == "competitor":
            company = competitors[number % len(competitors)]
        channel = weighted(rng, chan_cum, chan_items)
        if kind in ("applicant", "student", "personal", "competitor") and channel == "OFFLINE":
            channel = "ORGANIC_SEARCH"
        persona = {"student": "student", "applicant": "other"}.get(kind) or weighted(rng, pers_cum, pers_items)
        if kind == "personal" and rng.random() < 0.5:
            persona = "other"
        base = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
        if company is not None:
            domain_type = "competitor" if company.is_competitor else "business"
            local = rng.choice((base, base, base, f"{first[0]}{last}".lower().replace(" ", "").replace("'", ""),
                                first.lower()))
            domain = company.domain
        elif kind == "student" and rng.random() < 0.4:
            domain_type, local, domain = "business", base, rng.choice(vocab.UNIVERSITY_DOMAINS)
        else:
            domain_type = "personal"
            local = base + (str(rng.randint(1, 99)) if rng.random() < 0.6 else "")
            domain = rng.choice(funnel.lists["personal_email_domains"])
        email = f"{local}@{domain}"
        suffix = 2
        while email in emails:
            email = f"{local}{suffix}@{domain}"
            suffix += 1
        emails.add(email)
        dial = company.dial if company else "+1"
        phone = f"{dial} {rng.randint(201, 989)} 555 {rng.randint(100, 9999):04d}" if rng.random() < 0.8 else ""
        jobtitle = rng.choice(vocab.JOB_TITLES[persona])
        source_data = rng.choice(vocab.CHANNELS[channel][2])
        # created over the window, a little busier towards the end (growing marketing)
        create_day = min(world.days - 1, int(world.days * rng.random() ** 0.9))
        create_sec = _business_second(rng)
        intent = rng.betavariate(1.3, 3.0)
        intent = min(1.0, intent * {"economic_buyer": 1.15, "technical_evaluator": 1.1, "student": 0.6,
                                    "other": 0.8}.get(persona, 1.0))
        if kind == "competitor":
            intent = max(intent, 0.55)
        attrs = company_attrs(world, company, persona, domain_type)
        fit, fit_pos = funnel.fit_scores(attrs)
        disq = funnel.disqualified_by_fit(attrs) or kind == "applicant"
        segment = company.segment if company else "SMB"
        owner_id = company.owner_id if company else ""
        plan = ContactPlan(number, str(CONTACT_ID_BASE + number), first, last, email, phone, jobtitle, persona, kind,
                           domain_type, company.index if company else -1, segment, channel, source_data, create_day,
                           create_sec, intent, fit, fit_pos, disq,
                           suppress=not disq and fit_pos >= funnel.mql_min_fit_score,
                           owner_id=owner_id)
        _plan_mql(world, plan, rng)
        plans.append(plan)
    _plan_conversions(world, plans)
    return plans


def _business_second(rng: random.Random) -> int:
    hour = rng.choice((7, 8, 9, 9, 10, 10, 11, 11, 12, 13, 13, 14, 14, 15, 15, 16, 16, 17, 18, 19, 20))
    return hour * 3600 + rng.randrange(3600)


# points the sign-up day brings for sure (a form fill and its session); used to tell a forced MQL
SIGNUP_POINTS = {"form_submissions": 1, "sessions": 1}


def signup_points(funnel: Funnel) -> float:
    pts = 0.0
    for rule in funnel.count_rules:
        if rule.feature in SIGNUP_POINTS:
            pts += min(rule.cap if rule.cap is not None else math.inf, rule.points * SIGNUP_POINTS[rule.feature])
    return pts


def _plan_mql(world: World, p: ContactPlan, rng: random.Random) -> None:
    f = world.funnel
    eligible = not p.disqualified and p.fit >= f.mql_min_fit_score + 5 and p.kind in ("business", "student")
    if not eligible:
        return
    signup = 0.0 if p.channel == "OFFLINE" else signup_points(f)
    if p.fit + signup >= f.mql_score_threshold:
        p.forced_mql = True
        p.mql_day = p.create_day
        return
    potential = 70 * p.intent + 0.7 * p.fit
    if rng.random() >= min(0.95, max(0.0, (potential - 18) / 40)):
        return
    ramp = 1 + int(rng.expovariate(1 / (4 + 40 * (1 - p.intent))))
    if p.create_day + ramp < world.days:
        p.mql_day = p.create_day + ramp


def _plan_conversions(world: World, plans: list[ContactPlan]) -> None:
    counters = {c: (i * 0.1373) % 1.0 for i, c in enumerate(vocab.CHANNELS)}
    for p in plans:
        if p.mql_day < 0:
            continue
        u = counters[p.channel]
        counters[p.channel] = (u + GOLDEN) % 1.0
        prop = min(0.95, vocab.CHANNELS[p.channel][1] * vocab.PERSONA_MODIFIERS.get(p.persona, 1.0))
        if u >= prop:
            continue
        p.converts = True
        rng = stream(world.seed, S_CONTACT, 10_000_000 + p.index)
        lo, hi = vocab.SEGMENT_LAG_DAYS[p.segment]
        lag = rng.randint(lo, hi)
        if p.mql_day + lag < world.days:
            p.lag_days = lag
            p.sql_day = p.mql_day + lag


def day_string(start: date, day: int) -> str:
    return (start + timedelta(days=day)).isoformat()


def iso_ms(start: date, ms: int) -> str:
    """ISO-8601 UTC with milliseconds for a time given as ms since the window start (any sign)."""
    dt = datetime(start.year, start.month, start.day) + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
