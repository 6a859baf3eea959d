"""Segment JSON lines for a device's sessions and a contact's server-side events, bucketed by the day they were
received (a late event lands in a later day's file; one received after the window's end is not written)."""

from __future__ import annotations

import random

import orjson

from handoff.sample.activity import ServerEvent, Session
from handoff.sample.simulation_tables import SimulationTables
from handoff.sample.world import DAY_MS

APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE
dumps = orjson.dumps
LIBRARY_WEB = {"name": "analytics.js", "version": "next-1.70.0"}
LIBRARY_SERVER = {"name": "analytics-python", "version": "2.3.2"}
IP_FIRST_OCTETS = (23, 34, 52, 66, 72, 81, 86, 91, 104, 151, 185, 203)


class EventEmitter:
    """Turns units into Segment JSON lines, bucketed by the day they were received (``self.out``).

    Page views, most of the volume, are assembled from byte templates prepared once per page and per device;
    everything else goes through orjson. Both give plain JSON objects, one per line.
    """

    def __init__(self, tables: SimulationTables, rng: random.Random, *, anonymous_id: str | None,
                 user_id: str | None, user_agent: str, ip: str) -> None:
        self.tables = tables
        self.rng = rng
        self.anonymous_id = anonymous_id
        self.user_id = user_id
        self.user_agent = user_agent
        self.ip = ip
        self.out: list[tuple[int, bytes]] = []  # (received day, line)
        self.anonymous_id_json = dumps(anonymous_id)
        self.context_tail = (b'},"userAgent":' + dumps(user_agent) + b',"ip":' + dumps(ip) + b',"library":'
                             + dumps(LIBRARY_WEB) + b"}}\n")

    def _sent_and_received(self, at_ms: int, late: bool) -> tuple[int, int] | None:
        """When an event at ``at_ms`` was sent and received; None when it happened or arrives after the end."""
        end_ms = self.tables.end_ms
        if at_ms > end_ms:
            return None
        rand = self.rng.random
        sent_ms = at_ms + 5 + int(rand() * 1500)
        received_ms = (sent_ms + 20 + int(rand() * 900) if not late
                       else at_ms + 3_600_000 + int(rand() * 104_400_000))
        if received_ms > end_ms:
            return None
        return sent_ms, received_ms

    def emit(self, event: dict, at_ms: int, late: bool = False) -> None:
        delivery = self._sent_and_received(at_ms, late)
        if delivery is None:
            return
        sent_ms, received_ms = delivery
        tables = self.tables
        event["timestamp"] = tables.timestamp(at_ms)
        event["sentAt"] = tables.timestamp(sent_ms)
        event["receivedAt"] = tables.timestamp(received_ms)
        self.out.append((received_ms // DAY_MS, dumps(event, option=APPEND_NEWLINE)))

    def emit_page(self, page: int, at_ms: int, referrer_json: bytes, user_id_json: bytes, late: bool) -> None:
        delivery = self._sent_and_received(at_ms, late)
        if delivery is None:
            return
        sent_ms, received_ms = delivery
        tables = self.tables
        day_prefix, clock_time, millis_suffix = (tables.day_prefix_bytes, tables.clock_time_bytes,
                                                 tables.millisecond_suffix_bytes)
        at_day, at_millis = divmod(at_ms, DAY_MS)
        sent_day, sent_millis = divmod(sent_ms, DAY_MS)
        received_day, received_millis = divmod(received_ms, DAY_MS)
        message_id = b"%032x" % self.rng.getrandbits(128)  # noqa: UP031 (bytes have no f-strings)
        self.out.append((received_day, b"".join((
            b'{"messageId":"ajs-', message_id, b'","type":"page","anonymousId":', self.anonymous_id_json,
            b',"userId":', user_id_json,
            b',"timestamp":"', day_prefix[at_day], clock_time[at_millis // 1000], millis_suffix[at_millis % 1000],
            b'","sentAt":"', day_prefix[sent_day], clock_time[sent_millis // 1000], millis_suffix[sent_millis % 1000],
            b'","receivedAt":"', day_prefix[received_day], clock_time[received_millis // 1000],
            millis_suffix[received_millis % 1000],
            tables.page_event_head[page], referrer_json, tables.page_event_context[page], referrer_json,
            self.context_tail))))

    def message_id(self, prefix: str = "ajs-") -> str:
        return f"{prefix}{self.rng.getrandbits(128):032x}"

    def session(self, session: Session, user_id: str | None, traits: dict | None) -> str | None:
        """Emit a session; returns the userId in force afterwards (identify calls set it)."""
        tables = self.tables
        rand = self.rng.random
        start_ms = session.day * DAY_MS + session.sec * 1000
        referrer = session.referrer
        referrer_json = dumps(referrer)
        user_id_json = dumps(user_id)
        actions_by_position: dict[int, list] | None = None
        if session.actions:
            actions_by_position = {}
            for action in session.actions:
                actions_by_position.setdefault(action[0], []).append(action)
        if session.identify_first and traits is not None:
            user_id = self.identify(start_ms - 1500, traits, None)
            user_id_json = dumps(user_id)
        pages = tables.pages
        for position, (page_index, offset) in enumerate(zip(session.pages, session.offsets, strict=True)):
            at_ms = start_ms + offset * 1000 + int(rand() * 1000)
            if position == 0 and session.campaign:
                page = pages[page_index]
                campaign = session.campaign
                props = {"path": page.path,
                         "url": f"{page.url}?utm_source={campaign['source']}&utm_medium={campaign['medium']}"
                                f"&utm_campaign={campaign['name']}",
                         "title": page.title, "referrer": referrer}
                context = {"page": props, "campaign": campaign, "userAgent": self.user_agent, "ip": self.ip,
                           "library": LIBRARY_WEB}
                self.emit({"messageId": self.message_id(), "type": "page", "anonymousId": self.anonymous_id,
                           "userId": user_id, "name": page.title, "properties": props, "context": context}, at_ms,
                          late=session.late)
            else:
                self.emit_page(page_index, at_ms, referrer_json, user_id_json, session.late)
            if actions_by_position is not None and position in actions_by_position:
                user_id = self._page_actions(actions_by_position[position], pages[page_index], referrer,
                                             user_id=user_id, traits=traits, page_ms=at_ms)
                user_id_json = dumps(user_id)
            referrer = pages[page_index].url
            referrer_json = tables.page_url_json[page_index]
        return user_id

    def _page_actions(self, actions: list, page, referrer: str, *, user_id: str | None, traits: dict | None,
                      page_ms: int) -> str | None:
        """Forms (with their identify call), downloads and signals on one page view; returns the userId."""
        pages = self.tables.pages
        for action in actions:
            action_ms = page_ms + self.rng.randint(8, 40) * 1000
            kind = action[1]
            page_context = {"page": {"path": page.path, "url": page.url, "referrer": referrer, "title": page.title},
                            "userAgent": self.user_agent, "ip": self.ip, "library": LIBRARY_WEB}
            if kind == "form" or (kind in ("signal", "job") and len(action) > 3 and action[3]):
                form_id = action[2] if kind == "form" else action[3]
                if traits is not None:
                    user_id = self.identify(action_ms - 300, traits, page_context)
                self.track("Form Submitted", {"form_id": form_id, "page_path": page.path}, user_id, page_context,
                           action_ms)
                if kind == "form" and action[3] is not None:
                    self._download(pages[action[3]], user_id, page_context, action_ms + 700)
            if kind == "download":
                self._download(pages[action[2]], user_id, page_context, action_ms + 700)
            elif kind in ("signal", "job"):
                self.track(action[2], {"page_path": page.path, "form_id": action[3] or None}, user_id,
                           page_context, action_ms + 900)
        return user_id

    def _download(self, asset, user_id: str | None, context: dict, at_ms: int) -> None:
        self.track("Content Downloaded", {"asset_path": asset.path, "title": asset.title,
                                          "content_type": asset.content_type}, user_id, context, at_ms)

    def track(self, name: str, props: dict, user_id: str | None, context: dict, at_ms: int) -> None:
        self.emit({"messageId": self.message_id(), "type": "track", "event": name, "anonymousId": self.anonymous_id,
                   "userId": user_id, "properties": props, "context": context}, at_ms)

    def identify(self, at_ms: int, traits: dict, context: dict | None) -> str:
        identify_context = (dict(context) if context
                            else {"userAgent": self.user_agent, "ip": self.ip, "library": LIBRARY_WEB})
        identify_context["traits"] = {"email": traits["email"]}
        self.emit({"messageId": self.message_id(), "type": "identify", "anonymousId": self.anonymous_id,
                   "userId": self.user_id, "traits": traits, "context": identify_context}, at_ms)
        return self.user_id  # type: ignore[return-value]

    def server(self, unit: ServerEvent, user_id: str) -> None:
        at_ms = unit.day * DAY_MS + unit.sec * 1000 + self.rng.randrange(1000)
        self.emit({"messageId": self.message_id("srv-"), "type": "track", "event": unit.event, "anonymousId": None,
                   "userId": user_id, "properties": unit.props,
                   "context": {"userAgent": self.user_agent, "ip": self.ip, "library": LIBRARY_SERVER}}, at_ms)


def new_anonymous_id(rng: random.Random) -> str:
    """A version-4-shaped UUID drawn from ``rng``."""
    digits = f"{rng.getrandbits(128):032x}"
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-a{digits[17:20]}-{digits[20:]}"


def random_ip(rng: random.Random) -> str:
    return (f"{rng.choice(IP_FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}."
            f"{rng.randrange(1, 255)}")
