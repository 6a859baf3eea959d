"""What a refused CRM request says: ``CrmError`` and the reading of HubSpot's error answers (message, category,
correlation id, rate-limit policy and how long to wait)."""

from __future__ import annotations

from typing import Any

import httpx


class CrmError(RuntimeError):
    """A CRM request that failed for good: the status, HubSpot's category/message and correlation id."""

    def __init__(self, message: str, *, status: int | None = None, category: str | None = None,
                 correlation_id: str | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.correlation_id = correlation_id
        self.body = body


def retry_after(resp: httpx.Response) -> float:
    """Seconds a 429 asks to wait: ``Retry-After``, else the rate-limit window when none is left, else 1 s."""
    header = resp.headers.get("Retry-After")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    if resp.headers.get("X-HubSpot-RateLimit-Remaining") == "0":
        interval = resp.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        if interval and interval.isdigit():
            return int(interval) / 1000
    return 1.0


def policy_name(resp: httpx.Response) -> str | None:
    """The ``policyName`` of a 429 (SECONDLY for the search limit, DAILY ...), if the body has one."""
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get("policyName") if isinstance(body, dict) else None


def error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body)[:500]
    return str(body)[:200]


def api_error(what: str, resp: httpx.Response) -> CrmError:
    """The ``CrmError`` for a non-retryable answer: status, HubSpot's category and message, a hint, correlation id."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    category = body.get("category") if isinstance(body, dict) else None
    correlation = body.get("correlationId") if isinstance(body, dict) else None
    hint = {401: " — check the handoff_crm connection's token", 403: " — the token lacks a scope for this call",
            404: ""}.get(resp.status_code, "")
    return CrmError(f"{what} failed: {resp.status_code} {category or ''} {error_text(resp)}{hint}"
                    f"{f' (correlationId {correlation})' if correlation else ''}",
                    status=resp.status_code, category=category, correlation_id=correlation, body=body)
