"""Where the data comes from: ``config/sources.yml`` parsed into dataclasses, with errors that name the key.

```yaml
crm:
  mode: api                 # api (the CRM's REST API, via the handoff_crm Airflow connection) | csv (exports)
  csv_dir: ${HANDOFF_HOME:-.local}/sample/crm_csv
  csv_mapping:              # object -> how its CSV export maps onto the HubSpot v3 object shape
    contacts:
      file: contacts.csv            # default <object>.csv
      id_column: Record ID          # the record id
      updated_at_column: Last Modified Date
      created_at_column: Create Date
      columns: {First Name: firstname, ...}   # CSV column label -> property (or associations.<object>)
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from handoff import settings

DEFAULT_PATH = settings.REPO_ROOT / "config" / "sources.yml"
CRM_OBJECTS = ("owners", "companies", "contacts", "deals", "meetings", "calls", "tasks")
HISTORY_OBJECT = "lifecycle_stage_history"  # a CSV of contact lifecycle-stage changes, merged into contacts
HISTORY_FIELDS = ("value", "timestamp", "sourceType", "sourceId", "updatedByUserId")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class SourcesError(ValueError):
    """config/sources.yml is wrong: the message names the file and the key."""


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


@dataclass(frozen=True)
class CrmSource:
    mode: str = "api"
    csv_dir: Path | None = None
    csv_mapping: dict[str, CsvObjectMapping] = field(default_factory=dict)


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
    except yaml.YAMLError as exc:
        raise SourcesError(f"{cfg_path}: not valid YAML: {exc}") from None
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
    _no_unknown(block, {"mode", "csv_dir", "csv_mapping"}, where)
    mode = block.get("mode", "api")
    if mode not in ("api", "csv"):
        raise SourcesError(f"{where}.mode must be 'api' or 'csv', got {mode!r}")
    csv_dir = block.get("csv_dir")
    csv_dir_path = expand_path(csv_dir, where=f"{where}.csv_dir") if csv_dir else settings.paths().sample / "crm_csv"
    mapping = parse_csv_mapping(block.get("csv_mapping") or {}, where=f"{where}.csv_mapping")
    if mode == "csv" and not mapping:
        raise SourcesError(f"{where}.csv_mapping is required when mode is csv")
    return CrmSource(mode=mode, csv_dir=csv_dir_path, csv_mapping=mapping)


def parse_csv_mapping(block: Any, *, where: str = "csv_mapping") -> dict[str, CsvObjectMapping]:
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
        _no_unknown(spec, {"file", "id_column", "updated_at_column", "created_at_column", "columns", "top_level"},
                    here)
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
        file = spec.get("file") or f"{obj}.csv"
        if "/" in file or "\\" in file or file.startswith("."):
            raise SourcesError(f"{here}.file must be a file name inside csv_dir, got {file!r}")
        out[obj] = CsvObjectMapping(object_type=obj, file=file, id_column=id_column,
                                    updated_at_column=spec.get("updated_at_column"),
                                    created_at_column=spec.get("created_at_column"),
                                    columns=dict(columns), top_level=bool(spec.get("top_level", obj == "owners")))
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
