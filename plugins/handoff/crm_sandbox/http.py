"""The sandbox's HTTP vocabulary, transport-free: a response, HubSpot's error bodies and the query-string
parameters the endpoints read."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from .model import (
    PropertyProblem,
)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering (simulated timeout)


class ApiError(Exception):
    """An error answered with HubSpot's error body."""

    def __init__(self, status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.extra = extra


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps(payload), {"Content-Type": "application/json;charset=utf-8",
                                                     **(headers or {})})


def error_body(category: str | None, message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "error", "message": message, "correlationId": str(uuid.uuid4())}
    if category:
        body["category"] = category
    body.update(extra)
    return body


def row_error(category: str, message: str, context: dict[str, list[str]],
               errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One entry of a 207 response's `errors` (the SDK's StandardError: every field present)."""
    return {"status": "error", "category": category, "message": message, "context": context, "links": {},
            "errors": errors or []}


def problem_details(problems: list[PropertyProblem]) -> list[dict[str, Any]]:
    return [{"message": p.message, "code": p.code, "context": {"propertyName": [p.name]}} for p in problems]


def list_param(query: dict[str, list[str]], name: str) -> list[str] | None:
    """HubSpot takes list params both comma-separated and repeated."""
    if name not in query:
        return None
    out: list[str] = []
    for value in query[name]:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def bool_param(query: dict[str, list[str]], name: str) -> bool:
    value = (query.get(name) or ["false"])[-1].strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise ApiError(400, "VALIDATION_ERROR", f"{name} must be true or false, got {value!r}.")


def int_param(query: dict[str, list[str]], name: str, default: int, maximum: int) -> int:
    raw = (query.get(name) or [None])[-1]
    if raw in (None, ""):
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, "VALIDATION_ERROR", f"{name} must be a positive integer, got {raw!r}.")
    if int(raw) > maximum:
        raise ApiError(400, "VALIDATION_ERROR", f"{name} must be less than or equal to {maximum}, got {raw}.")
    return int(raw)


def after_param(query: dict[str, list[str]]) -> int:
    raw = (query.get("after") or [""])[-1]
    if raw == "":
        return 0
    if not raw.isdigit():
        raise ApiError(400, "VALIDATION_ERROR", f"after must be a paging cursor returned by this API, got {raw!r}.")
    return int(raw)
