"""Write the sample company to disk: the layout in docs/data-contracts.md ("Sample output").

The parent process plans the company (world.py), hands chunks of 1,000 contacts to worker processes
(workers.py) and appends what comes back, in chunk order, to the output files. Workers return their events
already deflated per day, so the parent only writes bytes; the result does not depend on how many workers ran.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from handoff.sample import vocab
from handoff.sample.config import CATALOG_PATH, FUNNEL_PATH, load_catalog, load_funnel
from handoff.sample.crm_records import DEAL_PROBABILITY
from handoff.sample.gzpieces import PieceWriter, deflate_piece
from handoff.sample.simulation_tables import SimulationTables
from handoff.sample.workers import init_worker, run_chunk, run_chunk_in_worker
from handoff.sample.world import World, build_world, day_string, iso_ms, plan_contacts

CHUNK_CONTACTS = 1000
VISITORS_PER_CONTACT = 5.0  # anonymous visitors who never identify
MAX_EVENTS_PER_FILE = 500_000

CSV_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "owners": [("Owner ID", "id"), ("User ID", "userId"), ("First Name", "firstName"), ("Last Name", "lastName"),
               ("Email", "email"), ("Team", "teams"), ("Create Date", "createdAt"),
               ("Last Modified Date", "updatedAt")],
    "companies": [("Record ID", "id"), ("Company name", "name"), ("Company Domain Name", "domain"),
                  ("Industry", "industry"), ("Number of Employees", "numberofemployees"),
                  ("Annual Revenue", "annualrevenue"), ("Monthly Web Visitors", "monthly_web_visitors"),
                  ("Web Technologies", "web_technologies"), ("Country/Region", "country"),
                  ("Company owner", "hubspot_owner_id"), ("Create Date", "createdate"),
                  ("Last Modified Date", "hs_lastmodifieddate")],
    "contacts": [("Record ID", "id"), ("First Name", "firstname"), ("Last Name", "lastname"), ("Email", "email"),
                 ("Phone Number", "phone"), ("Job Title", "jobtitle"), ("Persona", "persona"),
                 ("Associated Company ID", "associatedcompanyid"), ("Company Name", "company"),
                 ("Contact owner", "hubspot_owner_id"), ("Lifecycle Stage", "lifecyclestage"),
                 ("Lead Status", "hs_lead_status"), ("Original Source", "hs_analytics_source"),
                 ("Original Source Drill-Down 1", "hs_analytics_source_data_1"),
                 ("Unsubscribed from all email", "hs_email_optout"), ("Email hard bounced", "hs_email_bounce"),
                 ("Create Date", "createdate"), ("Last Modified Date", "lastmodifieddate")],
    "deals": [("Record ID", "id"), ("Deal Name", "dealname"), ("Pipeline", "pipeline"), ("Deal Stage", "dealstage"),
              ("Amount", "amount"), ("Create Date", "createdate"), ("Close Date", "closedate"),
              ("Deal owner", "hubspot_owner_id"), ("Last Modified Date", "hs_lastmodifieddate"),
              ("Associated Contact IDs", "associations.contacts"), ("Associated Company IDs",
                                                                     "associations.companies")],
    "meetings": [("Record ID", "id"), ("Activity date", "hs_timestamp"), ("Meeting name", "hs_meeting_title"),
                 ("Meeting outcome", "hs_meeting_outcome"), ("Activity assigned to", "hubspot_owner_id"),
                 ("Create Date", "hs_createdate"), ("Last Modified Date", "hs_lastmodifieddate"),
                 ("Associated Contact IDs", "associations.contacts")],
    "calls": [("Record ID", "id"), ("Activity date", "hs_timestamp"), ("Call direction", "hs_call_direction"),
              ("Call outcome", "hs_call_disposition"), ("Call Title", "hs_call_title"),
              ("Activity assigned to", "hubspot_owner_id"), ("Create Date", "hs_createdate"),
              ("Last Modified Date", "hs_lastmodifieddate"), ("Associated Contact IDs", "associations.contacts")],
    "lifecycle_stage_history": [("Contact ID", "contact_id"), ("Lifecycle Stage", "value"),
                                ("Changed At", "timestamp"), ("Source Type", "sourceType"),
                                ("Changed By User ID", "updatedByUserId")],
}
TRUTH_COLUMNS = ["contact_id", "email", "channel", "persona", "segment", "intent", "will_mql", "will_sql",
                 "planted_mql_at", "planted_lag_days", "planted_sql_at", "is_competitor", "is_job_applicant",
                 "is_personal_email"]
CRM_OBJECTS = ("owners", "companies", "contacts", "deals", "meetings", "calls")


@dataclass
class Manifest:
    seed: int
    contacts: int
    days: int
    start_date: str
    end_date: str
    funnel_version: str
    counts: dict[str, int] = field(default_factory=dict)
    events_per_day: dict[str, int] = field(default_factory=dict)
    files_per_day: dict[str, list[str]] = field(default_factory=dict)
    crm_csv_columns: dict[str, dict[str, str]] = field(default_factory=dict)
    max_events_per_file: int = MAX_EVENTS_PER_FILE
    generator: str = "handoff.sample 1"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def generate(out_dir: Path, *, seed: int = 42, contacts: int = 5000, days: int = 180, end_date: date,
             progress: Callable[[str], None] | None = None, workers: int | None = None,
             max_events_per_file: int = MAX_EVENTS_PER_FILE, funnel_path: Path = FUNNEL_PATH,
             catalog_path: Path = CATALOG_PATH) -> Manifest:
    """Generate the sample company into ``out_dir``; the same arguments always give the same bytes."""
    if contacts < 1 or days < 1:
        raise ValueError(f"contacts ({contacts}) and days ({days}) must both be at least 1")
    if max_events_per_file < 1:
        raise ValueError("max_events_per_file must be at least 1")
    say = progress or (lambda _msg: None)
    out = Path(out_dir)
    funnel = load_funnel(funnel_path)
    catalog = load_catalog(catalog_path)
    _prepare(out)
    world = build_world(seed, contacts, days, end_date, funnel)
    n_chunks = (contacts + CHUNK_CONTACTS - 1) // CHUNK_CONTACTS
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    workers = max(1, min(workers, n_chunks))
    manifest = Manifest(seed, contacts, days, world.start.isoformat(), end_date.isoformat(), funnel.version,
                        max_events_per_file=max_events_per_file)
    manifest.crm_csv_columns = {k: dict(v) for k, v in CSV_COLUMNS.items()}
    _write_owners_companies(out, world, manifest)
    # the worker processes start before the contacts are planned, so they do not inherit the plans
    with _Runner(world, catalog, max_events_per_file, workers) as runner:
        say(f"planning {contacts:,} contacts, {len(world.companies):,} companies, {len(world.owners)} owners")
        plans = plan_contacts(world, contacts)
        n_visitors = int(contacts * VISITORS_PER_CONTACT)
        per_chunk_v = (n_visitors + n_chunks - 1) // n_chunks
        tasks = [(plans[k * CHUNK_CONTACTS:(k + 1) * CHUNK_CONTACTS],
                  range(k * per_chunk_v, min(n_visitors, (k + 1) * per_chunk_v))) for k in range(n_chunks)]
        del plans
        sink = _Sink(out, world, max_events_per_file)
        say(f"simulating behaviour with {workers} worker process{'es' if workers > 1 else ''}")
        try:
            for done, result in enumerate(runner.run(tasks), start=1):
                tasks[done - 1] = None  # type: ignore[call-overload]  # free the chunk's plans
                sink.add(result)
                if done == n_chunks or done % max(1, n_chunks // 10) == 0:
                    say(f"{min(contacts, done * CHUNK_CONTACTS):,}/{contacts:,} contacts, {sink.events:,} events")
        finally:
            sink.close()
    counts = sink.counts
    manifest.counts = {"owners": len(world.owners), "companies": len(world.companies), "contacts": counts["contacts"],
                       "deals": counts["deals"], "meetings": counts["meetings"], "calls": counts["calls"],
                       "lifecycle_stage_history": counts["history"], "events": sink.events,
                       "anonymous_visitors": n_visitors, "event_files": sum(len(v) for v in sink.files.values())}
    manifest.events_per_day = {day_string(world.start, d): sink.per_day.get(d, 0) for d in range(days)}
    manifest.files_per_day = {day_string(world.start, d): sink.files.get(d, []) for d in range(days)}
    _write_ground_truth(out, world, catalog, sink)
    (out / "manifest.json").write_bytes(orjson.dumps(manifest.as_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    say(f"sample written to {out}: {sink.events:,} events in {manifest.counts['event_files']} files, "
        f"{sink.counts['contacts']:,} contacts, {sink.counts['deals']:,} deals")
    return manifest


def _prepare(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("crm", "crm_csv", "analytics"):  # only what this generator writes: no stale days or parts
        if (out / sub).exists():
            shutil.rmtree(out / sub)
        (out / sub).mkdir()
    for name in ("manifest.json", "ground_truth.json", "ground_truth_contacts.csv.gz"):
        (out / name).unlink(missing_ok=True)


class _Runner:
    """Runs chunks in order, in this process (one worker) or in a pool with a bounded number in flight."""

    def __init__(self, world: World, catalog, max_events: int, workers: int) -> None:
        self.args = (world, catalog, max_events)
        self.workers = workers
        self.pool = None
        self.tables: SimulationTables | None = None  # one worker: the tables, in this process

    def __enter__(self) -> _Runner:
        if self.workers == 1:
            self.tables = SimulationTables(*self.args)
        else:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            self.pool = multiprocessing.get_context(method).Pool(self.workers, initializer=init_worker,
                                                                 initargs=self.args)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def run(self, tasks: list):
        if self.pool is None:
            for task in tasks:
                yield run_chunk(self.tables, task)
            return
        pending: deque = deque()
        remaining = iter(tasks)
        for task in remaining:  # keep a bounded number of chunks in flight: memory stays flat
            pending.append(self.pool.apply_async(run_chunk_in_worker, (task,)))
            if len(pending) >= self.workers * 2:
                break
        while pending:
            result = pending.popleft().get()
            next_task = next(remaining, None)
            if next_task is not None:
                pending.append(self.pool.apply_async(run_chunk_in_worker, (next_task,)))
            yield result


class _Sink:
    """The open output files; chunks are appended in order."""

    def __init__(self, out: Path, world: World, max_events: int) -> None:
        self.out = out
        self.world = world
        self.max_events = max_events
        self.crm = {k: PieceWriter(out / "crm" / f"{k}.jsonl.gz") for k in ("contacts", "deals", "meetings", "calls")}
        self.csv_files = {}
        self.csv = {}
        for name in ("contacts", "deals", "meetings", "calls", "lifecycle_stage_history"):
            csv_file = (out / "crm_csv" / f"{name}.csv").open("w", newline="", encoding="utf-8")
            self.csv_files[name] = csv_file
            self.csv[name] = csv.writer(csv_file)
            self.csv[name].writerow([label for label, _ in CSV_COLUMNS[name]])
        self.truth = io.StringIO()
        self.truth_w = csv.writer(self.truth, lineterminator="\n")
        self.truth_w.writerow(TRUTH_COLUMNS)
        self.truth_gz = PieceWriter(out / "ground_truth_contacts.csv.gz")
        self.days: dict[int, tuple[PieceWriter, int]] = {}  # day -> (writer, events in its current part)
        self.files: dict[int, list[str]] = {}
        self.per_day: dict[int, int] = {}
        self.events = 0
        self.counts = {"contacts": 0, "deals": 0, "meetings": 0, "calls": 0, "history": 0}
        self.cases: dict[str, list[str]] = {}
        self.channels: dict[str, list[int]] = {}
        self.mismatch = 0

    def add(self, result: dict) -> None:
        for day in sorted(result["events"]):
            for piece in result["events"][day]:
                self._add_events(day, piece)
        for name, piece in result["crm"].items():
            self.crm[name].add(piece)
            self.counts[name] += piece[3]
        rows = result["rows"]
        for name, key in (("contacts", "contacts"), ("deals", "deals"), ("meetings", "meetings"),
                          ("calls", "calls"), ("lifecycle_stage_history", "history")):
            self.csv[name].writerows(rows[key])
        self.counts["history"] += len(rows["history"])
        self.truth_w.writerows(rows["truth"])
        self.truth_gz.write_raw(self.truth.getvalue().encode())
        self.truth.seek(0)
        self.truth.truncate()
        stats = result["stats"]
        self.mismatch += stats["mql_plan_mismatch"]
        for case, ids in stats["cases"].items():
            self.cases.setdefault(case, []).extend(ids)
        for channel, counts in stats["channel"].items():
            totals = self.channels.setdefault(channel, [0, 0, 0])
            for position, count in enumerate(counts):
                totals[position] += count

    def _add_events(self, day: int, piece) -> None:
        lines = piece[3]
        writer, count = self.days.get(day, (None, 0))
        if writer is None or count + lines > self.max_events:
            if writer is not None:
                writer.close()
            folder = self.out / "analytics" / day_string(self.world.start, day)
            folder.mkdir(exist_ok=True)
            names = self.files.setdefault(day, [])
            name = f"events-{len(names):04d}.jsonl.gz"
            names.append(name)
            writer, count = PieceWriter(folder / name), 0
        writer.add(piece)
        self.days[day] = (writer, count + lines)
        self.per_day[day] = self.per_day.get(day, 0) + lines
        self.events += lines

    def close(self) -> None:
        for writer in self.crm.values():
            writer.close()
        for csv_file in self.csv_files.values():
            csv_file.close()
        self.truth_gz.close()
        for w, _ in self.days.values():
            w.close()
        # a day nobody visited still gets its (empty) file, so every day of the window has a folder
        for d in range(self.world.days):
            if d not in self.files:
                folder = self.out / "analytics" / day_string(self.world.start, d)
                folder.mkdir(exist_ok=True)
                PieceWriter(folder / "events-0000.jsonl.gz").close()
                self.files[d] = ["events-0000.jsonl.gz"]


def _write_owners_companies(out: Path, world: World, manifest: Manifest) -> None:
    start = world.start
    owners, owner_rows = [], []
    for o in world.owners:
        obj = {"id": o.id, "email": o.email, "firstName": o.first, "lastName": o.last, "userId": o.user_id,
               "teams": [{"id": o.team_id, "name": o.team, "primary": True}], "archived": False,
               "createdAt": iso_ms(start, o.created_ms), "updatedAt": iso_ms(start, o.updated_ms)}
        owners.append(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE))
        owner_rows.append([o.id, o.user_id, o.first, o.last, o.email, o.team, obj["createdAt"], obj["updatedAt"]])
    companies, company_rows = [], []
    for company in world.companies:
        created, updated = iso_ms(start, company.created_ms), iso_ms(start, company.updated_ms)
        props = {"name": company.name, "domain": company.domain, "industry": company.industry,
                 "numberofemployees": str(company.employees), "annualrevenue": str(company.revenue),
                 "monthly_web_visitors": str(company.web_visitors),
                 "web_technologies": ";".join(company.technologies), "country": company.country,
                 "hubspot_owner_id": company.owner_id, "createdate": created, "hs_lastmodifieddate": updated,
                 "hs_object_id": company.id}
        companies.append(orjson.dumps({"id": company.id, "properties": props, "createdAt": created,
                                       "updatedAt": updated, "archived": False}, option=orjson.OPT_APPEND_NEWLINE))
        company_rows.append([company.id, company.name, company.domain, company.industry, company.employees,
                             company.revenue, company.web_visitors, props["web_technologies"], company.country,
                             company.owner_id, created, updated])
    for name, lines, rows in (("owners", owners, owner_rows), ("companies", companies, company_rows)):
        with PieceWriter(out / "crm" / f"{name}.jsonl.gz") as writer:
            writer.add(deflate_piece(b"".join(lines), len(lines)))
        with (out / "crm_csv" / f"{name}.csv").open("w", newline="", encoding="utf-8") as csv_file:
            rows_writer = csv.writer(csv_file)
            rows_writer.writerow([label for label, _ in CSV_COLUMNS[name]])
            rows_writer.writerows(rows)


def _write_ground_truth(out: Path, world: World, catalog, sink: _Sink) -> None:
    props = {ch: v[1] for ch, v in vocab.CHANNELS.items()}
    realized = {}
    for channel in vocab.CHANNELS:
        contacts, mqls, sqls = sink.channels.get(channel, [0, 0, 0])
        realized[channel] = {"contacts": contacts, "mqls": mqls, "sqls_within_window": sqls,
                        "rate": round(sqls / mqls, 4) if mqls else None}
    funnel = world.funnel
    doc = {
        "seed": world.seed,
        "start_date": world.start.isoformat(),
        "end_date": world.end.isoformat(),
        "funnel_version": funnel.version,
        "channel_propensities": props,
        "channel_order": sorted(props, key=lambda c: -props[c]),
        "channel_contact_share": {ch: v[0] for ch, v in vocab.CHANNELS.items()},
        "channel_source_data_1": {ch: list(v[2]) for ch, v in vocab.CHANNELS.items()},
        "persona_modifiers": vocab.PERSONA_MODIFIERS,
        "rule_effects": {"download_decision": {
            "what": "an SQL's chance of a deal, with a decision-stage download before the SQL and otherwise",
            "deal_probability": DEAL_PROBABILITY}},
        "segment_lag_days": {seg: {"min": lo, "max": hi} for seg, (lo, hi) in vocab.SEGMENT_LAG_DAYS.items()},
        "segment_by_company_size_band": vocab.BAND_SEGMENT,
        "mql": {"score_threshold": float(funnel.mql_score_threshold), "min_fit_score": float(funnel.mql_min_fit_score),
                "how": "before planted_mql_at the generator keeps an upper bound of the score (no decay, windows a "
                       "day longer, no behavioural negatives) under the threshold; on that day it adds decision-"
                       "stage activity until a lower bound (an extra day of decay, windows a day shorter, every "
                       "negative that could apply) reaches it. Any reasonable reading of config/funnel.yml should "
                       "find the MQL on the day of planted_mql_at."},
        "sql": {"signals": [ev for ev, feat in funnel.events.items() if feat in funnel.sql_signals],
                "crm_ui_share_of_converted_mqls": 0.15,
                "how": "converted MQLs send one decision signal (or a rep sets salesqualifiedlead, CRM_UI) on "
                       "planted_sql_at = planted_mql_at + planted_lag_days; no contact sends a decision signal "
                       "before its SQL; will_sql means the SQL happened on or before end_date"},
        "realized": {"per_channel": realized, "mql_plan_mismatches": sink.mismatch},
        "planted_cases": {k: sink.cases[k] for k in sorted(sink.cases)},
        "planted_cases_help": {
            "skipped_mql_crm_sql": "a rep set salesqualifiedlead (CRM_UI) although the web behaviour never made "
                                   "the contact an MQL: sql from the CRM, mql inferred",
            "deal_without_sql": "a won deal (opportunity → customer, sourceType DEALS) with no SQL on record",
            "sql_rejected_bad_timing": "hs_lead_status BAD_TIMING set after the SQL (recycling)",
            "sql_unqualified": "hs_lead_status UNQUALIFIED set after the SQL (disqualified)",
            "lead_unqualified": "hs_lead_status UNQUALIFIED on a lead that never became an SQL",
        },
        "content_catalog": [{"path": e.path, "content_type": e.content_type, "buying_stage": e.buying_stage,
                             "title": e.title} for e in catalog],
    }
    (out / "ground_truth.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
