"""Keep a contact's score where its plan says: under the MQL threshold before the planned MQL day, over it on
that day, whatever reading of the funnel's rules scores it.

* before the planned MQL day (or for ever, when none is planned) each activity day is checked against an
  *upper bound* of the score (no decay, windows one day longer, no behavioural negatives); if the bound reaches
  the threshold, the day's scoring actions are toned down (pricing views become blog reads, downloads and extra
  sessions go), so no reading of the rules can make the contact an MQL early;
* on the planned MQL day a burst of decision-stage activity lifts a *lower bound* of the score (decayed one day
  more, windows one day shorter, every possible negative applied) over the threshold, so every reading agrees
  the contact is an MQL that day.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from handoff.sample.activity import ServerEvent, Session, day_features
from handoff.sample.contact_behaviour import HOUR, ContactBehaviour, gated_form_id
from handoff.sample.score_bounds import add_counts, lower_bound, quick_bound, upper_bound
from handoff.sample.world import DAY_MS

LAST_SESSION_START = 22 * HOUR


@dataclass
class _Walk:
    """The state of the walk over one contact's days."""
    behaviour: ContactBehaviour
    threshold: float
    history: list = field(default_factory=list)  # (day, features) within the longest window before today
    ever: dict[str, int] = field(default_factory=dict)  # all-time feature counts before today
    kept: list = field(default_factory=list)  # the units of the days walked, as they will be emitted


def keep_score_to_plan(behaviour: ContactBehaviour) -> None:
    """Walk the contact's days in order, toning days down or adding the MQL burst; records the MQL moment and
    whether the plan held (``mql_ok``), and leaves ``behaviour.units`` as what is finally emitted."""
    plan, tables = behaviour.plan, behaviour.tables
    walk = _Walk(behaviour, tables.funnel.mql_score_threshold)
    units_by_day: dict[int, list] = {}
    for unit in sorted(behaviour.units, key=lambda unit: (unit.day, unit.sec)):
        units_by_day.setdefault(unit.day, []).append(unit)
    if plan.mql_day >= 0:
        units_by_day.setdefault(plan.mql_day, [])
    history = walk.history
    mql_day = plan.mql_day
    done = not plan.suppress and mql_day < 0
    for day in sorted(units_by_day):
        todays = units_by_day[day]
        if not done and day >= plan.create_day:
            if (mql_day < 0 or day < mql_day) and not _tone_down(walk, day, todays):
                # the fit and the sign-up alone cross the threshold: an MQL today (counted as a mismatch)
                mql_day = day
            if day == mql_day:
                _burst(walk, day, todays)
                done = True
        features = day_features(tables, todays)
        add_counts(walk.ever, features)
        history.append((day, features))
        while history and day - history[0][0] > tables.max_window:
            history.pop(0)
        walk.kept.extend(todays)
    if mql_day != plan.mql_day:
        behaviour.mql_ok = False
        plan.mql_day = mql_day
    behaviour.units = walk.kept


def _tone_down(walk: _Walk, day: int, todays: list) -> bool:
    """Tone the day down until no reading of the rules puts the score at the threshold. False: cannot."""
    behaviour, history = walk.behaviour, walk.history
    plan, tables = behaviour.plan, behaviour.tables
    fit = plan.fit

    def under_threshold() -> bool:
        return upper_bound(tables, fit, history, day, day_features(tables, todays)) < walk.threshold

    features = day_features(tables, todays)
    if (quick_bound(tables, fit, walk.ever, features) < walk.threshold
            or upper_bound(tables, fit, history, day, features) < walk.threshold):
        return True
    # 1. decision pages become blog reads; downloads and optional forms go
    for unit in todays:
        if isinstance(unit, Session):
            unit.pages = [behaviour.rng.choice(tables.blog) if page in tables.scoring_pages else page
                          for page in unit.pages]
            if unit.mandatory:
                unit.actions = [(pos, "form", "newsletter-signup", None) if kind == "form" else (pos, kind, *rest)
                                for pos, kind, *rest in unit.actions]
            else:
                unit.actions = []
    if under_threshold():
        return True
    # 2. drop email and social engagement, 3. then the optional sessions
    for unit_type in (ServerEvent, Session):
        optional = [unit for unit in todays
                    if isinstance(unit, unit_type) and not getattr(unit, "mandatory", False)]
        for unit in optional:
            if isinstance(unit, ServerEvent) and unit.event in ("Unsubscribed", "Email Bounced"):
                continue
            todays.remove(unit)
            if under_threshold():
                return True
    # 4. on the sign-up day, forget the anonymous visits before it
    if day == plan.create_day and history:
        history.clear()
        walk.kept[:] = [unit for unit in walk.kept if unit.day >= plan.create_day]
        if under_threshold():
            return True
    return False


def _burst(walk: _Walk, day: int, todays: list) -> None:
    """Decision-stage activity until even the lowest reading of the score reaches the threshold."""
    behaviour = walk.behaviour
    tables, rng, plan = behaviour.tables, behaviour.rng, behaviour.plan

    def reaches_threshold() -> bool:
        return lower_bound(tables, plan.fit, walk.history, day, day_features(tables, todays),
                           ever=walk.ever) >= walk.threshold

    if reaches_threshold():
        behaviour.mql_ms = max(behaviour.created_ms, _day_last_ms(day, todays))
        return
    created_sec = behaviour.created_ms // 1000 % 86400
    signup = ([unit for unit in todays if isinstance(unit, Session) and unit.mandatory]
              if day == plan.create_day else [])
    sec = -1 if signup else behaviour.hour_slot(day)
    if day == plan.create_day and not signup:  # imported contact: after the import
        sec = max(sec, created_sec + 600)
        if sec > LAST_SESSION_START:
            sec = -1
    if sec >= 0:
        session = Session(day, sec)
        session.mandatory = True
        session.add_page(rng, rng.choice(tables.decide))
        todays.append(session)
        behaviour.units.append(session)
    else:  # the sign-up session (or the day's last one) goes on to the decision pages
        sessions_by_start = sorted((unit for unit in todays if isinstance(unit, Session)), key=lambda unit: unit.sec)
        session = (signup or sessions_by_start or [None])[-1]
        if session is None:
            session = Session(day, max(0, min(LAST_SESSION_START, created_sec + 60)))
            session.mandatory = True
            todays.append(session)
            behaviour.units.append(session)
        session.add_page(rng, rng.choice(tables.decide))
    steps = [("page", tables.pricing), ("asset", "decision"), ("page", tables.comparison),
             ("asset", "consideration"), ("page", tables.pricing), ("page", tables.comparison),
             ("asset", "decision"), ("page", tables.pricing), ("page", tables.comparison),
             ("asset", "consideration"), ("page", tables.comparison)]
    for kind, arg in steps:
        if kind == "page" and arg:
            session.add_page(rng, rng.choice(arg))
        elif kind == "asset":
            asset = rng.choice(tables.assets[arg])
            position = session.add_page(rng, asset)
            session.actions.append((position, "form", gated_form_id(tables, asset), asset))
        if reaches_threshold():
            break
    else:
        behaviour.mql_ok = False
    behaviour.mql_ms = day * DAY_MS + (session.sec + session.offsets[-1] + 45) * 1000


def _day_last_ms(day: int, todays: list) -> int:
    latest = 0
    for unit in todays:
        latest = max(latest, unit.end_sec() if isinstance(unit, Session) else unit.sec)
    return day * DAY_MS + min(latest, 86399) * 1000
