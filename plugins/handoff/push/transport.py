"""How the push talks to the CRM: one ``post(path, body)`` call that either returns the CRM's answer (any
status) or raises ``NoAnswer`` (timeout, dropped connection, retries exhausted: the request may or may not
have been applied).

``as_transport(client)`` wraps the project's ``handoff.crm.client.CrmClient`` through its ``_request``, so the
client's one rate limiter, 429/Retry-After handling, backoff with jitter and bounded attempts govern every
request of the run; anything else with a ``post(path, body) -> Answer`` method (a test double) is used as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx


@dataclass
class Answer:
    """An HTTP answer from the CRM (any status, after the transport's own retries)."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


class NoAnswer(Exception):
    """The request got no answer (timeout, connection dropped): the CRM may or may not have applied it."""


@runtime_checkable
class Transport(Protocol):
    def post(self, path: str, body: dict[str, Any]) -> Answer: ...


def _json_or_text(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return {"message": resp.text}


class _ClientAdapter:
    """``handoff.crm.client.CrmClient`` seen as a ``Transport`` (through its reusable ``_request``)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def post(self, path: str, body: dict[str, Any]) -> Answer:
        try:
            resp = self.client._request("POST", path, json=body)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise NoAnswer(f"POST {path}: {type(exc).__name__}: {exc}") from None
        except httpx.HTTPStatusError as exc:  # a client that raises on non-2xx still carries the answer
            resp = exc.response
        except Exception as exc:  # CrmError: a definite 4xx carries status and body; status None = retries ran out
            status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
            if isinstance(status, int):
                return Answer(status, getattr(exc, "body", None) or {"message": str(exc)}, {})
            raise NoAnswer(f"POST {path}: {exc}") from None
        if isinstance(resp, httpx.Response):
            return Answer(resp.status_code, _json_or_text(resp), resp.headers)
        return Answer(200, resp, {})  # a client that returns the parsed body on success


def as_transport(client: Any) -> Transport:
    if hasattr(client, "_request"):  # the project's CrmClient (checked first: it may have its own `post`)
        return _ClientAdapter(client)
    if isinstance(client, Transport):
        return client
    raise TypeError(f"the push needs a CRM client with a _request method or a post(path, body) transport, "
                    f"got {type(client).__name__}")
