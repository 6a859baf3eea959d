"""Property tests: the line validator classifies every line exactly once and never raises; COPY text escaping
round-trips arbitrary strings and JSON through a real COPY; whatever the validator lets through, PostgreSQL takes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
from handoff.load import analytics, copytext, lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.plugins.load.events import event

END = datetime(2026, 3, 3, tzinfo=UTC)
def fixture_ok(n: int) -> settings:
    return settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=n)

json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
KEYS = ["messageId", "type", "timestamp", "receivedAt", "anonymousId", "userId", "event", "name", "properties",
        "context", "traits"]
timestamps = (st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                           timezones=st.just(UTC) | st.none()).map(lambda d: d.isoformat())
              | st.sampled_from(["2026-03-02T10:00:00Z", "2026-03-02", "1970-01-01T00:00:00Z", "not a date",
                                 "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", ""]))


@st.composite
def mutated_events(draw) -> bytes:
    """A valid event with a few keys replaced by arbitrary JSON, dropped, or given odd timestamps."""
    ev = event(draw(st.integers(0, 10_000)), kind=draw(st.sampled_from(["page", "track", "identify"])))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(KEYS))
        action = draw(st.sampled_from(["drop", "value", "timestamp", "text"]))
        if action == "drop":
            ev.pop(key, None)
        elif action == "value":
            ev[key] = draw(json_values)
        elif action == "timestamp":
            ev[key] = draw(timestamps)
        else:
            ev[key] = draw(st.text(max_size=20))
    data = orjson.dumps(ev)
    if draw(st.booleans()):  # sometimes corrupt the bytes
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.binary(max_size=4)).replace(b"\n", b"") + data[pos:]
    return data


any_lines = st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")) | mutated_events() | \
    json_values.map(orjson.dumps)


@given(st.lists(any_lines, max_size=20))
@settings(max_examples=500, deadline=None)
def test_judge_classifies_every_line_exactly_once_and_never_raises(batch):
    judge = lines.LineJudge(END, lines.Limits(max_line_bytes=150, max_field_bytes=60))
    for raw in batch:
        verdict, payload = judge.judge(raw)
        if verdict == lines.LOAD:
            assert len(payload) == 7 and all(isinstance(v, str) for v in payload)
            obj = orjson.loads(raw)
            assert isinstance(obj, dict) and obj["type"] in lines.CALL_TYPES
        elif verdict == lines.QUARANTINE:
            reason, ref = payload
            assert isinstance(reason, str) and reason and not reason.startswith("unexpected")
            assert ref is None or isinstance(ref, str)
        else:
            assert verdict == lines.BLANK and not raw.strip()


@given(st.lists(mutated_events(), min_size=1, max_size=15))
@fixture_ok(40)
def test_whatever_the_judge_loads_postgres_accepts(wh, tmp_path_factory, batch):
    """Through the real loader: the file loads (no PostgreSQL refusal), and read = loaded + quarantined."""
    with psycopg.connect(wh.conninfo("admin"), autocommit=True) as conn:  # each example starts empty
        conn.execute("truncate raw.analytics_events, raw.quarantine, ops.file_ledger, ops.load_log")
    landing = tmp_path_factory.mktemp("l")
    (landing / "2026-03-02").mkdir()
    (landing / "2026-03-02" / f"{uuid.uuid4()}.jsonl").write_bytes(b"\n".join(batch) + b"\n")
    judge = lines.LineJudge(END)
    expected = [judge.judge(raw)[0] for raw in batch]
    res = analytics.load_analytics_files(wh.conninfo("loader"), landing, END - timedelta(days=1), END,
                                         max_bad_share=1.0)
    assert res["rows_loaded"] == expected.count(lines.LOAD)
    assert res["rows_quarantined"] == expected.count(lines.QUARANTINE)
    assert res["rows_read"] == res["rows_loaded"] + res["rows_quarantined"]
    assert not any(f.startswith("refused") for f in _reasons(wh))


def _reasons(wh) -> list[str]:
    with psycopg.connect(wh.conninfo("admin")) as conn:
        return [r for (r,) in conn.execute("select reason from raw.quarantine").fetchall()]


# what a decoded file can hold: any character but NUL (PostgreSQL text cannot) and lone surrogates (not UTF-8)
text_no_nul = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=60)


@given(st.lists(st.one_of(st.none(), text_no_nul), min_size=3, max_size=3))
@fixture_ok(200)
def test_copy_text_escaping_round_trips(wh, values):
    with psycopg.connect(wh.conninfo("admin")) as conn:
        conn.execute("create temp table t (a text, b text, c text)")
        with conn.cursor().copy("COPY t (a, b, c) FROM STDIN") as copy:
            copy.write(copytext.row(values))
        assert list(conn.execute("select a, b, c from t").fetchone()) == values


json_no_nul = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | text_no_nul,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text_no_nul, inner, max_size=4), max_leaves=15)


@given(json_no_nul, st.sampled_from([b"", b" ", b"\t", b"\r", b" \t\r "]))
@fixture_ok(200)
def test_record_line_escaping_round_trips_into_jsonb(wh, value, ws):
    raw = ws + orjson.dumps(value) + ws
    with psycopg.connect(wh.conninfo("admin")) as conn:
        conn.execute("create temp table t (n int, j jsonb, s text)")
        with conn.cursor().copy("COPY t (n, j, s) FROM STDIN") as copy:
            copy.write(b"1\t" + copytext.escape_lines(raw) + b"\t" + copytext.escape_bytes(raw) + b"\n")
        j, s = conn.execute("select j, s from t").fetchone()
        assert j == orjson.loads(raw)
        assert s.encode() == raw
