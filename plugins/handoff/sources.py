"""Where the data comes from: ``config/sources.yml`` parsed into dataclasses, with errors that name the key.

```yaml
crm:
  mode: api                 # api (the CRM's REST API, via the handoff_crm Airflow connection) | csv (exports)
  csv_dir: ${HANDOFF_HOME:-.local}/sample/crm_csv
  csv_max_bad_share: 0.01   # a CSV with more quarantined/read rows than this is rejected (nothing of it loads)
  csv_dates: {format: iso, timezone: UTC}   # how date cells are written (see CsvDates); per object: dates:
  csv_mapping:              # object -> how its CSV export maps onto the HubSpot v3 object shape
    contacts:
      file: contacts.csv            # default <object>.csv
      id_column: Record ID          # the record id
      updated_at_column: Last Modified Date
      created_at_column: Create Date
      columns: {First Name: firstname, ...}   # CSV column label -> property (or associations.<object>)
      date_columns: [Renewal Date]  # more date-valued columns (labels) besides HubSpot's known date properties
      dates: {format: month_first, timezone: America/New_York}   # overrides csv_dates for this object (key by key)
analytics:
  landing: ${HANDOFF_HOME:-.local}/sample/analytics
  max_bad_share: 0.01
  max_field_bytes: 65536
  max_line_bytes: 1048576
  max_future_skew_hours: 24
```

Paths expand ``~`` and environment variables (``${VAR}``, ``${VAR:-default}``); relative paths are relative to
the repository root.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from handoff import settings

DEFAULT_PATH = settings.REPO_ROOT / "config" / "sources.yml"
CRM_OBJECTS = ("owners", "companies", "contacts", "deals", "meetings", "calls", "tasks")
HISTORY_OBJECT = "lifecycle_stage_history"  # a CSV of contact lifecycle-stage changes, merged into contacts
HISTORY_FIELDS = ("value", "timestamp", "sourceType", "sourceId", "updatedByUserId")
# HubSpot's date-valued properties that the shipped mappings use: a column mapped to one of these (or to a
# lifecycle-stage date, hs_lifecyclestage_<stage>_date, hs_date_entered_/hs_date_exited_<stage> or their
# hs_v2_date_entered_/hs_v2_date_exited_<stage> successors) is parsed as
# a date by the CSV loader, whatever its label (in lifecycle_stage_history: the column mapped to timestamp).
# Other date columns are named in the object's date_columns.
HUBSPOT_DATE_PROPERTIES = frozenset({
    "createdate", "hs_createdate", "lastmodifieddate", "hs_lastmodifieddate", "closedate", "hs_timestamp",
    "hs_lastactivitydate", "notes_last_updated", "notes_last_contacted", "notes_next_activity_date",
    "hs_last_sales_activity_timestamp", "first_conversion_date", "recent_conversion_date",
    "hs_analytics_first_timestamp", "hs_analytics_last_timestamp"})
_HUBSPOT_DATE_PATTERN = re.compile(
    r"hs_lifecyclestage_[a-z0-9_]+_date|hs_(?:v2_)?date_(?:entered|exited)_[a-z0-9_]+")
DATE_FORMATS = ("iso", "day_first", "month_first")  # or an explicit strptime format (one containing %)
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class SourcesError(ValueError):
    """config/sources.yml is wrong: the message names the file and the key."""


def is_hubspot_date_property(name: str) -> bool:
    return name in HUBSPOT_DATE_PROPERTIES or _HUBSPOT_DATE_PATTERN.fullmatch(name) is not None


@dataclass(frozen=True)
class CsvDates:
    """How the date cells of a CSV export are written.

    ``format``: ``iso`` (ISO-8601, or epoch milliseconds of 12 digits or more; the default), ``day_first`` /
    ``month_first`` (``31/12/2026``, ``12/31/2026``, with ``/``, ``.`` or ``-``, optionally followed by
    ``HH:MM[:SS]`` or a 12-hour time with AM/PM; ISO-8601 values are accepted too), or an explicit ``strptime``
    format (``%d.%m.%Y %H:%M``).
    ``timezone``: the IANA zone of values without an offset (default UTC); values with an offset keep it.
    """

    format: str = "iso"
    timezone: str = "UTC"


@dataclass(frozen=True)
class CsvObjectMapping:
    """How one object's CSV export maps onto the HubSpot object shape."""

    object_type: str
    file: str
    id_column: str
    updated_at_column: str | None = None
    created_at_column: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # CSV label -> property name / associations.<type>
    top_level: bool = False  # owners: fields sit at the top of the object, not under "properties"
    date_columns: tuple[str, ...] = ()  # labels of date-valued columns besides HubSpot's known date properties
    dates: CsvDates | None = None  # this object's date format; None = the CSV-wide crm.csv_dates

    def is_date_column(self, label: str) -> bool:
        """Whether the CSV column ``label`` holds dates: the updated-at/created-at columns, the labels in
        ``date_columns``, and columns mapped to a HubSpot date property (``is_hubspot_date_property``)."""
        if label in (self.updated_at_column, self.created_at_column) or label in self.date_columns:
            return True
        target = self.columns.get(label)
        if target is None:
            return False
        return target == "timestamp" if self.object_type == HISTORY_OBJECT else is_hubspot_date_property(target)


@dataclass(frozen=True)
class CrmSource:
    mode: str = "api"
    csv_dir: Path | None = None
    csv_mapping: dict[str, CsvObjectMapping] = field(default_factory=dict)
    csv_max_bad_share: float = 0.01
    csv_dates: CsvDates = field(default_factory=CsvDates)

    def csv_load_options(self) -> dict[str, Any]:
        """The CRM CSV loader's options from this configuration (``load_crm_csv(..., **options)``): the one place
        the daily run and ``import-history`` both take them from."""
        return {"max_bad_share": self.csv_max_bad_share, "dates": self.csv_dates}


@dataclass(frozen=True)
class AnalyticsSource:
    landing: Path
    max_bad_share: float = 0.01
    max_field_bytes: int = 64 << 10
    max_line_bytes: int = 1 << 20
    max_future_skew_hours: float = 24.0


@dataclass(frozen=True)
class Sources:
    crm: CrmSource
    analytics: AnalyticsSource
    path: Path | None = None


def expand_path(value: str, *, where: str = "path") -> Path:
    """``~`` and ``${VAR}`` / ``${VAR:-default}`` / ``$VAR`` expanded; relative to the repository root."""
    def sub(match: re.Match) -> str:
        name = match.group(1) or match.group(3)
        default = match.group(2)
        got = os.environ.get(name)
        if got:
            return got
        if default is not None:
            return default
        raise SourcesError(f"{where}: environment variable {name} is not set (write ${{{name}:-default}} to give a "
                           "default)")

    text = _ENV.sub(sub, str(value))
    path = Path(text).expanduser()
    return path if path.is_absolute() else settings.REPO_ROOT / path


def default_landing() -> Path:
    return settings.paths().sample / "analytics"


def load(path: str | os.PathLike | None = None) -> Sources:
    """Read and validate the sources configuration (defaults when the file does not exist)."""
    cfg_path = Path(path) if path is not None else DEFAULT_PATH
    if not cfg_path.exists():
        if path is not None:
            raise SourcesError(f"{cfg_path}: no such file")
        return parse({}, where=str(cfg_path))
    try:
        data = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as exc:  # one line: the problem and where
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise SourcesError(f"{cfg_path}: not valid YAML: {problem}{where}") from None
    return parse(data, where=str(cfg_path))


def parse(data: Any, *, where: str = "sources.yml") -> Sources:
    if not isinstance(data, dict):
        raise SourcesError(f"{where}: the top level must be a mapping with crm: and analytics:")
    _no_unknown(data, {"crm", "analytics"}, where)
    return Sources(crm=_crm(data.get("crm") or {}, f"{where}: crm"),
                   analytics=_analytics(data.get("analytics") or {}, f"{where}: analytics"),
                   path=Path(where) if where.endswith((".yml", ".yaml")) else None)


def _no_unknown(block: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(block) - known)
    if unknown:
        raise SourcesError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; known: {', '.join(sorted(known))}")


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise SourcesError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _crm(block: Any, where: str) -> CrmSource:
    block = _mapping(block, where)
    _no_unknown(block, {"mode", "csv_dir", "csv_mapping", "csv_max_bad_share", "csv_dates"}, where)
    mode = block.get("mode", "api")
    if mode not in ("api", "csv"):
        raise SourcesError(f"{where}.mode must be 'api' or 'csv', got {mode!r}")
    csv_dir = block.get("csv_dir")
    csv_dir_path = expand_path(csv_dir, where=f"{where}.csv_dir") if csv_dir else settings.paths().sample / "crm_csv"
    csv_dates = parse_csv_dates(block.get("csv_dates"), where=f"{where}.csv_dates") or CsvDates()
    mapping = parse_csv_mapping(block.get("csv_mapping") or {}, where=f"{where}.csv_mapping", dates=csv_dates)
    if mode == "csv" and not mapping:
        raise SourcesError(f"{where}.csv_mapping is required when mode is csv")
    return CrmSource(mode=mode, csv_dir=csv_dir_path, csv_mapping=mapping,
                     csv_max_bad_share=float(_number(block, "csv_max_bad_share", 0.01, where, hi=1)),
                     csv_dates=csv_dates)


def parse_csv_dates(value: Any, *, where: str = "csv_dates", base: CsvDates | None = None) -> CsvDates | None:
    """``{format: iso | day_first | month_first | <strptime format>, timezone: <IANA zone>}``; None when absent.
    A key not given comes from ``base`` (an object's ``dates:`` inherits ``crm.csv_dates`` key by key), else
    the default (``iso``, ``UTC``)."""
    if value is None or isinstance(value, CsvDates):
        return value
    base = base or CsvDates()
    block = _mapping(value, where)
    _no_unknown(block, {"format", "timezone"}, where)
    fmt = block.get("format", base.format)
    if not isinstance(fmt, str) or not (fmt in DATE_FORMATS or "%" in fmt):
        raise SourcesError(f"{where}.format must be one of {', '.join(DATE_FORMATS)} or a strptime format such as "
                           f"'%d.%m.%Y %H:%M', got {fmt!r}")
    tz = block.get("timezone", base.timezone)
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise SourcesError(f"{where}.timezone must be an IANA time zone such as UTC or Europe/Berlin, "
                           f"got {tz!r}") from None
    return CsvDates(format=fmt, timezone=tz)


def parse_csv_mapping(block: Any, *, where: str = "csv_mapping", dates: CsvDates | None = None
                      ) -> dict[str, CsvObjectMapping]:
    """The objects' mappings; ``dates`` is ``crm.csv_dates``, which an object's ``dates:`` inherits key by key."""
    block = _mapping(block, where)
    out: dict[str, CsvObjectMapping] = {}
    for obj, given in block.items():
        here = f"{where}.{obj}"
        if isinstance(given, CsvObjectMapping):
            out[obj] = given
            continue
        if obj not in (*CRM_OBJECTS, HISTORY_OBJECT):
            raise SourcesError(f"{here}: unknown object; known: {', '.join((*CRM_OBJECTS, HISTORY_OBJECT))}")
        spec = _mapping(given, here)
        _no_unknown(spec, {"file", "id_column", "updated_at_column", "created_at_column", "columns", "top_level",
                           "date_columns", "dates"}, here)
        id_column = spec.get("id_column")
        if not isinstance(id_column, str) or not id_column:
            raise SourcesError(f"{here}.id_column is required: the CSV column holding the record id"
                               + (" (the contact id)" if obj == HISTORY_OBJECT else ""))
        columns = _mapping(spec.get("columns") or {}, f"{here}.columns")
        for label, target in columns.items():
            if not isinstance(label, str) or not isinstance(target, str) or not target:
                raise SourcesError(f"{here}.columns: {label!r} must map a CSV column label to a property name")
            if target.startswith("associations.") and target.split(".", 1)[1] not in CRM_OBJECTS:
                raise SourcesError(f"{here}.columns.{label}: {target!r} names no CRM object")
            if obj == HISTORY_OBJECT and target not in HISTORY_FIELDS:
                raise SourcesError(f"{here}.columns.{label}: history columns map to one of "
                                   f"{', '.join(HISTORY_FIELDS)}, got {target!r}")
        for key in ("updated_at_column", "created_at_column", "file"):
            if spec.get(key) is not None and not isinstance(spec.get(key), str):
                raise SourcesError(f"{here}.{key} must be a string")
        date_columns = spec.get("date_columns") or []
        if not isinstance(date_columns, list) or not all(isinstance(c, str) and c for c in date_columns):
            raise SourcesError(f"{here}.date_columns must be a list of CSV column labels")
        known_labels = {*columns, id_column, spec.get("updated_at_column"), spec.get("created_at_column")}
        unmapped = [c for c in date_columns if c not in known_labels]
        if unmapped:
            raise SourcesError(f"{here}.date_columns: {', '.join(map(repr, unmapped))} not among the columns "
                               "mapped in columns: (map a date column to a property to have it parsed)")
        file = spec.get("file") or f"{obj}.csv"
        if "/" in file or "\\" in file or file.startswith("."):
            raise SourcesError(f"{here}.file must be a file name inside csv_dir, got {file!r}")
        out[obj] = CsvObjectMapping(object_type=obj, file=file, id_column=id_column,
                                    updated_at_column=spec.get("updated_at_column"),
                                    created_at_column=spec.get("created_at_column"),
                                    columns=dict(columns), top_level=bool(spec.get("top_level", obj == "owners")),
                                    date_columns=tuple(date_columns),
                                    dates=parse_csv_dates(spec.get("dates"), where=f"{here}.dates", base=dates))
    return out


def _number(block: dict, key: str, default: float, where: str, *, integer: bool = False, lo: float = 0,
            hi: float | None = None) -> Any:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        raise SourcesError(f"{where}.{key} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise SourcesError(f"{where}.{key} must be between {lo} and {hi if hi is not None else 'any'}, got {value}")
    return value


def _analytics(block: Any, where: str) -> AnalyticsSource:
    block = _mapping(block, where)
    _no_unknown(block, {"landing", "max_bad_share", "max_field_bytes", "max_line_bytes", "max_future_skew_hours"},
                where)
    landing = block.get("landing")
    if landing is not None and not isinstance(landing, str):
        raise SourcesError(f"{where}.landing must be a path, got {landing!r}")
    if landing and "://" in landing:
        raise SourcesError(f"{where}.landing: object-store URLs are not supported yet; use a local path "
                           f"(got {landing!r})")
    return AnalyticsSource(
        landing=expand_path(landing, where=f"{where}.landing") if landing else default_landing(),
        max_bad_share=float(_number(block, "max_bad_share", 0.01, where, hi=1)),
        max_field_bytes=_number(block, "max_field_bytes", 64 << 10, where, integer=True, lo=1),
        max_line_bytes=_number(block, "max_line_bytes", 1 << 20, where, integer=True, lo=1),
        max_future_skew_hours=float(_number(block, "max_future_skew_hours", 24, where)),
    )
