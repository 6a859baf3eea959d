"""A thin HubSpot CRM v3 client: one rate-limited, retrying transport (``_request``) and the reads handoff needs.

Why not the official ``hubspot-api-client`` SDK: the SDK deserializes responses into generated models, which drop
fields the model does not know (custom properties survive, but e.g. ``archivedAt`` on some objects, or anything
HubSpot adds later, does not), while raw tables must keep the object exactly as the API returned it; it has no
rate limiter shared across its sub-clients (each API class retries on its own via urllib3, sleeping inside the
SDK); and it would add a second HTTP stack next to ``httpx``. A small ``httpx`` client (this module, with
``errors``, ``rate_limit`` and ``timestamps`` beside it) gives us the exact JSON, one rate limiter for every request
the process sends (reads now, the push's writes later), retries we control and can test deterministically, and one
place that guarantees the token never reaches a log line, an exception or a repr. The sandbox accepts what the SDK
sends; this client sends the same requests.

Limits (HubSpot's, as ``handoff.crm_sandbox.limits.LIMITS`` lists them with their documentation pages): at most 100
requests per rolling 10 s (``rate_limit.RateLimiter``), and the search endpoints on top at most 5 per rolling second
per token (a second ``RateLimiter``, 5 per 1.1 s for a margin, that only ``POST .../search`` takes); pages of 100
(list), 200 (search), 50 (list and batch read with ``propertiesWithHistory``), batches of 100.

Retries: 429 waits for ``Retry-After`` (or the ``X-HubSpot-RateLimit-Interval-Milliseconds`` window when
``X-HubSpot-RateLimit-Remaining`` is 0; 1 s when the answer says neither, as a search 429 does) and pauses the
limiter the request went through (the search limiter for policyName SECONDLY, else the shared one); a 429 with
policyName DAILY fails at once (the day's quota is gone; retrying only burns attempts). 5xx, timeouts and connection
errors back off exponentially with full jitter. At most ``max_attempts`` attempts per request; other 4xx fail at once
with HubSpot's message and correlation id.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from handoff.crm.errors import CrmError, api_error, error_text, policy_name, retry_after
from handoff.crm.rate_limit import RateLimiter
from handoff.crm.timestamps import epoch_ms, parse_epoch_ms

log = logging.getLogger(__name__)

SEARCH_RESULT_CAP = 10_000  # HubSpot's search returns at most this many results per query
SEARCH_PAGE = 200
# search requests per rolling second per token (HubSpot: 5), apart from the 100 / 10 s; paced over 1.1 s, not 1.0: the
# server stamps a request when it arrives, and a search 429 costs a whole second, so network jitter gets a margin
SEARCH_RATE = (5, 1.1)
LIST_PAGE = 100
LIST_PAGE_WITH_HISTORY = 50
BATCH_READ_WITH_HISTORY = 50  # batch/read inputs when propertiesWithHistory is asked for
# ids per associations batch/read: HubSpot's developer changelog, "Batch Read Limit for HubSpot Associations API"
# (from 2025-02-10, at most 1,000 inputs for v3 and v4)
ASSOCIATIONS_BATCH_MAX = 1000
BATCH_MAX = 100
LASTMODIFIED = {"contacts": "lastmodifieddate"}  # others: hs_lastmodifieddate
RETRY_STATUSES = frozenset({500, 502, 503, 504})


class CrmClient:
    """HubSpot CRM v3 client (a context manager). ``base_url`` like ``https://api.hubapi.com``; ``token`` a
    private-app token. The token is kept out of ``repr``, logs and exceptions."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30, rate_limiter: RateLimiter | None = None,
                 max_attempts: int = 6, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, backoff_base: float = 0.5,
                 backoff_cap: float = 30.0, search_rate_limiter: RateLimiter | None = None) -> None:
        if not token:
            raise ValueError("CrmClient needs a token (the handoff_crm connection's password is empty)")
        self.base_url = base_url.rstrip("/")
        self.max_attempts = max(1, max_attempts)
        self.rate_limiter = rate_limiter or RateLimiter(sleep=sleep)
        # on the shared limiter's clock and sleep unless told otherwise, so one fake clock drives both in tests
        self.search_rate_limiter = search_rate_limiter or RateLimiter(
            *SEARCH_RATE, clock=self.rate_limiter._clock, sleep=self.rate_limiter._sleep)
        self._sleep = sleep
        self._backoff_base, self._backoff_cap = backoff_base, backoff_cap
        self._random = random.Random()
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                                           "User-Agent": "handoff-crm-client/0.1"})
        self.requests_sent = 0

    def __repr__(self) -> str:
        return f"CrmClient(base_url={self.base_url!r})"

    def __enter__(self) -> CrmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------------------------------ transport

    def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
                 retry_on_timeout: bool = True) -> httpx.Response:
        """Send one API request through the shared limiter with retries; returns a 2xx response or raises
        ``CrmError``. Pass ``retry_on_timeout=False`` for writes that must not be repeated blindly."""
        what = f"{method} {path}"
        last: str = ""
        search = method == "POST" and path.rstrip("/").endswith("/search")
        for attempt in range(1, self.max_attempts + 1):
            self.rate_limiter.acquire()
            if search:
                self.search_rate_limiter.acquire()
            self.requests_sent += 1
            try:
                resp = self._http.request(method, path, params=params, json=json)
            except httpx.TimeoutException as exc:
                last = f"timed out ({type(exc).__name__})"
                if not retry_on_timeout:
                    raise CrmError(f"{what} {last}; not retried (the write may or may not have happened)") from None
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__}: {exc})"
            else:
                if resp.status_code < 300:
                    return resp
                if resp.status_code == 429:
                    policy = policy_name(resp)
                    if policy == "DAILY":
                        raise api_error(what, resp)
                    delay = retry_after(resp)
                    (self.search_rate_limiter if search and policy == "SECONDLY" else self.rate_limiter).pause(delay)
                    last = f"429 rate limited ({error_text(resp)})"
                    # the shared limiter makes the next acquire() (ours and every other thread's) wait it out
                    log.warning("%s: 429, waiting %.1fs (attempt %d/%d)", what, delay, attempt, self.max_attempts)
                    continue
                if resp.status_code not in RETRY_STATUSES:
                    raise api_error(what, resp)
                last = f"{resp.status_code} ({error_text(resp)})"
            if attempt < self.max_attempts:
                delay = self._random.uniform(0, min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1)))
                log.warning("%s: %s; retrying in %.2fs (attempt %d/%d)", what, last, delay, attempt,
                            self.max_attempts)
                self._sleep(delay)
        raise CrmError(f"{what} failed after {self.max_attempts} attempts; last: {last}")

    def _json(self, method: str, path: str, **request_args: Any) -> dict[str, Any]:
        resp = self._request(method, path, **request_args)
        try:
            return resp.json()
        except ValueError:
            raise CrmError(f"{method} {path}: the response is not JSON ({resp.text[:200]!r})",
                           status=resp.status_code) from None

    # ------------------------------------------------------------------------------------------ reads

    def iter_objects(self, object_type: str, properties: Iterable[str], *,
                     properties_with_history: Iterable[str] | None = None,
                     associations: Iterable[str] | None = None, archived: bool = False,
                     updated_since: datetime | None = None,
                     updated_before: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Objects of one type as raw dicts, exactly as the API returned them.

        Window: ``updated_since < updatedAt <= updated_before`` (either bound optional; archived records are
        windowed on ``archivedAt``, falling back to ``updatedAt``). Routes:
        - ``owners``: ``GET /crm/v3/owners`` (filtered client-side);
        - archived, or a first full sync (no ``updated_since``): the list endpoint, filtered client-side on the
          window;
        - otherwise the search endpoint on the last-modified property, ascending, with the window split in
          halves while a query matches more than 10,000 records; when ``properties_with_history`` is asked for,
          each page's ids are re-read with ``batch/read`` (search results carry no history) and those objects
          are yielded instead; when ``associations`` are asked for, each page's are read with the associations
          ``batch/read`` (one request per associated type and page) in the list endpoint's shape. (The list
          endpoint reads every record, 100 a request: the daily sync at 100,000 contacts took 376 requests,
          31.6 s at 100 requests / 10 s; with the search, 32 requests, 1.4 to 3.7 s; `make bench`. Those figures
          predate batch reads with history going in 50s, HubSpot's limit: a search page of 200 contacts now takes
          four batch reads, not two.)
        Either route returns an association as of the read, for the records whose window it is: HubSpot does
        not move a record's last-modified date when only its associations change, so a later association
        change reaches the warehouse with the record's next change (or a full sync), on both routes.
        An object may be yielded twice when it changes while we page; loaders dedupe downstream.
        """
        properties = list(properties)
        history = list(properties_with_history or [])
        assoc = list(associations or [])
        since_ms = epoch_ms(updated_since) if updated_since is not None else None
        before_ms = epoch_ms(updated_before) if updated_before is not None else None
        if object_type == "owners":
            yield from self._windowed(self._list_owners(archived), since_ms, before_ms, archived)
        elif archived or since_ms is None:
            yield from self._windowed(self._list(object_type, properties, history, assoc, archived), since_ms,
                                      before_ms, archived)
        else:
            yield from self._search_window(object_type, properties, since_ms + 1,
                                           (before_ms if before_ms is not None else epoch_ms(datetime.now(UTC))) + 1,
                                           history=history, assoc=assoc)

    @staticmethod
    def _windowed(objects: Iterator[dict[str, Any]], since_ms: int | None, before_ms: int | None,
                  archived: bool) -> Iterator[dict[str, Any]]:
        """The objects with ``since_ms < stamp <= before_ms`` (either bound optional), and those with no stamp."""
        for obj in objects:
            stamp = (obj.get("archivedAt") if archived else None) or obj.get("updatedAt")
            stamp_ms = parse_epoch_ms(stamp)
            if stamp_ms is None:  # let the loader quarantine it rather than silently drop it
                yield obj
                continue
            if (since_ms is None or stamp_ms > since_ms) and (before_ms is None or stamp_ms <= before_ms):
                yield obj

    def _list(self, object_type: str, properties: list[str], history: list[str], assoc: list[str],
              archived: bool) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"limit": LIST_PAGE_WITH_HISTORY if history else LIST_PAGE,
                                  "archived": "true" if archived else "false"}
        if properties:
            params["properties"] = ",".join(properties)
        if history:
            params["propertiesWithHistory"] = ",".join(history)
        if assoc:
            params["associations"] = ",".join(assoc)
        yield from self._paged(f"/crm/v3/objects/{object_type}", params)

    def _list_owners(self, archived: bool) -> Iterator[dict[str, Any]]:
        yield from self._paged("/crm/v3/owners", {"limit": 500, "archived": "true" if archived else "false"})

    def _paged(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            page = self._json("GET", path, params={**params, **({"after": after} if after else {})})
            yield from page.get("results") or []
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    def search_page(self, object_type: str, properties: list[str], lo_ms: int, hi_ms: int, *,
                    after: str | None = None, limit: int = SEARCH_PAGE) -> dict[str, Any]:
        """One page of records with ``lo_ms <= last-modified < hi_ms``, oldest first."""
        prop = LASTMODIFIED.get(object_type, "hs_lastmodifieddate")
        body: dict[str, Any] = {
            "filterGroups": [{"filters": [{"propertyName": prop, "operator": "GTE", "value": str(lo_ms)},
                                          {"propertyName": prop, "operator": "LT", "value": str(hi_ms)}]}],
            "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
            "properties": properties,
            "limit": limit,
        }
        if after:
            body["after"] = after
        return self._json("POST", f"/crm/v3/objects/{object_type}/search", json=body)

    def _search_window(self, object_type: str, properties: list[str], lo_ms: int, hi_ms: int, *,
                       history: list[str], assoc: list[str]) -> Iterator[dict[str, Any]]:
        """Every record in [lo_ms, hi_ms): halves the window while it matches more than the search cap."""
        stack = [(lo_ms, hi_ms)]
        while stack:
            low, high = stack.pop()
            first = self.search_page(object_type, properties, low, high)
            total = int(first.get("total") or 0)
            if total > SEARCH_RESULT_CAP:
                if high - low <= 1:
                    raise CrmError(f"{object_type}: {total} records were modified in the same millisecond "
                                   f"({low}); the search API cannot page past {SEARCH_RESULT_CAP}")
                mid = low + (high - low) // 2
                log.info("%s: %d records in [%d, %d) > search cap; splitting", object_type, total, low, high)
                stack.append((mid, high))  # popped last: windows are processed oldest first
                stack.append((low, mid))
                continue
            page = first
            while True:
                results = page.get("results") or []
                if history and results:
                    results = self.batch_read(object_type, [r.get("id") for r in results], properties,
                                              properties_with_history=history)
                if assoc and results:
                    self._attach_associations(object_type, results, assoc)
                yield from results
                after = ((page.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
                page = self.search_page(object_type, properties, low, high, after=after)

    def _attach_associations(self, object_type: str, objects: list[dict[str, Any]], to_types: list[str]) -> None:
        """Gives each object the ``associations`` the list endpoint would: ``{to_type: {"results": [...]}}`` for
        the types it has any of."""
        ids = [str(obj.get("id")) for obj in objects if obj.get("id") is not None]
        for to_type in to_types:
            linked = self.read_associations(object_type, to_type, ids)
            for obj in objects:
                if items := linked.get(str(obj.get("id"))):
                    obj.setdefault("associations", {})[to_type] = {"results": items}

    def read_associations(self, from_type: str, to_type: str, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """``POST /crm/v3/associations/{from}/{to}/batch/read`` in chunks of 1,000: each id's associated records
        (``{"id", "type"}``); an id with none is absent (HubSpot answers it with a NO_ASSOCIATIONS_FOUND error).

        Raises ``CrmError`` on any other per-id error, and when an id has more associations than one page (v3
        cannot page further): a record loaded without its associations would replace its correct version
        downstream, so the object type's batch fails and its watermark stays where it was."""
        out: dict[str, list[dict[str, Any]]] = {}
        ids = list(dict.fromkeys(ids))
        path = f"/crm/v3/associations/{from_type}/{to_type}/batch/read"
        what = f"POST {path}"
        for start in range(0, len(ids), ASSOCIATIONS_BATCH_MAX):
            body = {"inputs": [{"id": str(x)} for x in ids[start:start + ASSOCIATIONS_BATCH_MAX]]}
            data = self._json("POST", path, json=body)
            for result in data.get("results") or []:
                from_id = str((result.get("from") or {}).get("id"))
                if (result.get("paging") or {}).get("next"):
                    raise CrmError(f"{what}: {from_type} {from_id} has more {to_type} associations than one "
                                   "page, and the v3 batch read cannot page further")
                out.setdefault(from_id, []).extend(result.get("to") or [])
            failed = [err for err in data.get("errors") or []
                      if "NO_ASSOCIATIONS_FOUND" not in str(err.get("subCategory") or "")]
            if failed:
                raise CrmError(f"{what}: {len(failed)} error(s), first: {failed[0].get('category')}: "
                               f"{failed[0].get('message')} {failed[0].get('context') or ''}".rstrip())
        return out

    def batch_read(self, object_type: str, ids: list[str], properties: list[str], *,
                   properties_with_history: list[str] | None = None, archived: bool = False) -> list[dict[str, Any]]:
        """``POST /crm/v3/objects/{type}/batch/read`` in chunks of 100 (50 with ``properties_with_history``, HubSpot's
        limit); unknown ids are skipped (logged). A merged-away id comes back as the surviving record."""
        out: list[dict[str, Any]] = []
        size = BATCH_READ_WITH_HISTORY if properties_with_history else BATCH_MAX
        for start in range(0, len(ids), size):
            body: dict[str, Any] = {"inputs": [{"id": str(x)} for x in ids[start:start + size]],
                                    "properties": properties}
            if properties_with_history:
                body["propertiesWithHistory"] = properties_with_history
            data = self._json("POST", f"/crm/v3/objects/{object_type}/batch/read",
                              params={"archived": "true" if archived else "false"}, json=body)
            for err in data.get("errors") or []:
                log.warning("%s batch/read: %s", object_type, err.get("message"))
            out.extend(data.get("results") or [])
        return out

