"""The worker side of the generator: a chunk of contacts (and of anonymous visitors) in, their deflated event
files, CRM lines, CSV rows and statistics out.

``run_chunk(tables, task)`` does the work with the tables passed in. In a pool, the tables are built once per
worker process by the Pool initializer (``init_worker``) and kept in this module's one per-process slot,
``_process_tables``, which only ``run_chunk_in_worker`` reads. Why a slot instead of passing the tables with
each chunk: they are built from the world, whose pickle is about 8 MB at 100,000 contacts (0.4 s to pickle and
unpickle, in the parent, for every chunk); a Pool initializer cannot hand anything to the tasks except through
the worker process's own module state. Everything below ``run_chunk`` takes the tables as an argument.
"""

from __future__ import annotations

from handoff.sample import vocab
from handoff.sample.activity import Session
from handoff.sample.config import CatalogEntry
from handoff.sample.contact_behaviour import HOUR, ContactBehaviour, SessionPlanner
from handoff.sample.crm_records import ContactOutput, crm_records
from handoff.sample.gzpieces import Piece, deflate_piece
from handoff.sample.mql_timing import keep_score_to_plan
from handoff.sample.segment_events import EventEmitter, new_anonymous_id, random_ip
from handoff.sample.simulation_tables import SimulationTables
from handoff.sample.world import DAY_MS, S_VISITOR, ContactPlan, World, stream

_process_tables: SimulationTables | None = None  # this worker process's tables; set by init_worker only


def init_worker(world: World, catalog: tuple[CatalogEntry, ...], max_events_per_file: int) -> None:
    """The Pool initializer: build this worker process's tables once."""
    global _process_tables  # noqa: PLW0603 - the one per-process slot (see the module docstring)
    _process_tables = SimulationTables(world, catalog, max_events_per_file)


def run_chunk_in_worker(task: tuple[list[ContactPlan], range]) -> dict:
    """``run_chunk`` with the tables ``init_worker`` built in this process (the function a Pool runs)."""
    if _process_tables is None:
        raise RuntimeError("run_chunk_in_worker runs in a pool whose initializer is init_worker")
    return run_chunk(_process_tables, task)


def run_chunk(tables: SimulationTables, task: tuple[list[ContactPlan], range]) -> dict:
    """Simulate a chunk's contacts and anonymous visitors; return their output, ready to append."""
    plans, visitors = task
    lines_by_day: dict[int, list[bytes]] = {}
    contacts, deals, meetings, calls = [], [], [], []
    rows: dict[str, list] = {"contacts": [], "history": [], "deals": [], "meetings": [], "calls": [], "truth": []}
    stats = {"mql_plan_mismatch": 0, "cases": {}, "channel": {}}
    for plan in plans:
        out = simulate_contact(tables, plan)
        for day, line in out.events:
            lines_by_day.setdefault(day, []).append(line)
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
        channel_counts = stats["channel"].setdefault(plan.channel, [0, 0, 0])  # contacts, MQLs, SQLs
        channel_counts[0] += 1
        channel_counts[1] += out.will_mql
        channel_counts[2] += out.will_mql and out.will_sql
    for visitor in visitors:
        for day, line in simulate_visitor(tables, visitor):
            lines_by_day.setdefault(day, []).append(line)
    day_pieces: dict[int, list[Piece]] = {}
    per_file = tables.max_events
    for day, lines in lines_by_day.items():
        day_pieces[day] = [deflate_piece(b"".join(lines[i:i + per_file]), len(lines[i:i + per_file]))
                           for i in range(0, len(lines), per_file)]
    return {
        "events": day_pieces,
        "crm": {"contacts": deflate_piece(b"".join(contacts), len(contacts)),
                "deals": deflate_piece(b"".join(deals), len(deals)),
                "meetings": deflate_piece(b"".join(meetings), len(meetings)),
                "calls": deflate_piece(b"".join(calls), len(calls))},
        "rows": rows,
        "stats": stats,
    }


def simulate_contact(tables: SimulationTables, plan: ContactPlan) -> ContactOutput:
    """One contact: its behaviour, kept to its plan, emitted as events; then its CRM records."""
    behaviour = ContactBehaviour(tables, plan)
    behaviour.build()
    keep_score_to_plan(behaviour)
    rng = behaviour.rng
    # keyword arguments are evaluated in the order written: the device's draws stay in this order
    emitter = EventEmitter(tables, rng, anonymous_id=new_anonymous_id(rng), user_id=plan.id,
                           user_agent=rng.choice(vocab.USER_AGENTS), ip=random_ip(rng))
    company = behaviour.company
    traits = {"email": plan.email, "firstName": plan.first, "lastName": plan.last,
              "company": company.name if company else None}
    user_id: str | None = None
    for unit in sorted(behaviour.units, key=lambda unit: (unit.day, unit.sec)):
        if isinstance(unit, Session):
            if user_id is None and plan.channel == "OFFLINE":
                unit.identify_first = True  # imported at the event; the first visit comes from a tracked email link
            user_id = emitter.session(unit, user_id, traits)
        else:
            emitter.server(unit, plan.id)
    if plan.mql_day >= 0 and behaviour.mql_ms < 0:
        behaviour.mql_ms = plan.mql_day * DAY_MS + 12 * HOUR * 1000
    if plan.sql_day >= 0 and behaviour.sql_ms < 0:
        signal = behaviour.signal_session
        behaviour.sql_ms = ((signal.day * DAY_MS + (signal.sec + signal.offsets[-1] + 40) * 1000) if signal
                            else plan.sql_day * DAY_MS)
    return crm_records(tables, behaviour, emitter.out)


def simulate_visitor(tables: SimulationTables, visitor: int) -> list[tuple[int, bytes]]:
    """An anonymous visitor who never identifies: a few sessions over the window, as (received day, line)."""
    rng = stream(tables.world.seed, S_VISITOR, visitor)
    emitter = EventEmitter(tables, rng, anonymous_id=new_anonymous_id(rng), user_id=None,
                           user_agent=rng.choice(vocab.USER_AGENTS), ip=random_ip(rng))
    planner = SessionPlanner(tables, rng)
    first_day = rng.randrange(tables.days)
    channel = rng.choice(tuple(vocab.CHANNELS))
    n_days = 1 + int(rng.expovariate(1 / 1.6))
    day = first_day
    for visit_number in range(n_days):
        if day >= tables.days:
            break
        draw = rng.random()
        mode = "aware" if draw < 0.68 else "careers" if draw < 0.8 else "consider" if draw < 0.92 else "decide"
        session = planner.make_session(day, mode, min(16, 1 + int(rng.expovariate(1 / 3.4))))
        if session is None:
            break
        if visit_number == 0:
            session.referrer = rng.choice(vocab.REFERRERS[channel])
        emitter.session(session, None, None)
        day += 1 + int(rng.expovariate(1 / 9))
    return emitter.out
