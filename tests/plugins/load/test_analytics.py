"""The analytics loader against the real warehouse: the bad-input corpus, the bad-share rejection, the ledger."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from handoff.load import analytics, lines
from handoff.load.analytics import BadShareExceeded

from tests.plugins.load.events import line, write_file

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "bad_inputs"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())
DAY = datetime(2026, 3, 2, tzinfo=UTC)


def run(wh, landing: Path, day: datetime = DAY, **kw) -> dict:
    return analytics.load_analytics_files(wh.conninfo("loader"), landing, day, day + timedelta(days=1), **kw)


def q(wh, query: str, params=None) -> list[tuple]:
    with psycopg.connect(wh.conninfo("admin")) as conn:
        return conn.execute(query, params).fetchall()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_input_corpus(wh, tmp_path, name):
    exp = EXPECTED[name]
    target = tmp_path / "landing" / "2026-03-02" / name
    target.parent.mkdir(parents=True)
    shutil.copy(CORPUS / name, target)

    res = run(wh, tmp_path / "landing", max_bad_share=0.5)

    quarantined = [list(r) for r in q(wh, "select _line, reason from raw.quarantine order by _line")]
    assert quarantined == exp["quarantined"]
    assert res["rows_loaded"] == exp["loaded"]
    assert res["rows_quarantined"] == len(exp["quarantined"])
    assert q(wh, "select count(*) from raw.analytics_events") == [(exp["loaded"],)]
    # the load_log row reconciles, and the file is in the ledger once
    assert q(wh, "select status, rows_read, rows_loaded, rows_quarantined from ops.load_log") == [
        ("loaded", exp["loaded"] + len(exp["quarantined"]), exp["loaded"], len(exp["quarantined"]))]
    assert q(wh, "select path, file_date::text from ops.file_ledger") == [(str(target), "2026-03-02")]
    # every raw row and quarantine row carries the batch and the file
    batch = q(wh, "select batch_id from ops.load_log")[0][0]
    assert q(wh, "select distinct _batch_id, _source from raw.analytics_events") in ([], [(batch, str(target))])


def test_good_lines_around_a_bad_one_load_with_their_line_numbers(wh, tmp_path):
    target = tmp_path / "landing" / "2026-03-02" / "invalid_json.jsonl"
    target.parent.mkdir(parents=True)
    shutil.copy(CORPUS / "invalid_json.jsonl", target)
    run(wh, tmp_path / "landing", max_bad_share=0.5)
    assert q(wh, "select _line, message_id from raw.analytics_events order by _line") == [
        (1, "m-001"), (2, "m-002"), (3, "m-003"), (5, "m-051"), (6, "m-052"), (7, "m-053")]
    assert q(wh, "select record_ref, raw_text from raw.quarantine") == [
        (None, '{"messageId": "m-100", "type": "page",')]


def test_columns_and_record_of_a_loaded_event(wh, tmp_path):
    target = tmp_path / "landing" / "2026-03-02" / "embedded_newline.jsonl"
    target.parent.mkdir(parents=True)
    shutil.copy(CORPUS / "embedded_newline.jsonl", target)
    run(wh, tmp_path / "landing")
    row = q(wh, "select message_id, event_type, event_name, anonymous_id, user_id, event_at, received_at, "
                "record->>'name', record->'properties'->>'path' from raw.analytics_events where _line = 4")[0]
    assert row == ("m-100", "page", "line one\nline two\ttabbed \\ done", "a-1", None,
                   datetime(2026, 3, 2, 10, 40, tzinfo=UTC), datetime(2026, 3, 2, 10, 40, 1, tzinfo=UTC),
                   "line one\nline two\ttabbed \\ done", "/pricing")


def test_quarantine_keeps_undecodable_bytes_readably(wh, tmp_path):
    target = tmp_path / "landing" / "2026-03-02" / "invalid_utf8.jsonl"
    target.parent.mkdir(parents=True)
    shutil.copy(CORPUS / "invalid_utf8.jsonl", target)
    run(wh, tmp_path / "landing", max_bad_share=0.5)
    [(raw_text,)] = q(wh, "select raw_text from raw.quarantine")
    assert '"name":"Pr\ufffdcis"' in raw_text


def test_track_event_name_and_record_ref(wh, tmp_path):
    lines = [line(1, kind="track"), line(2, kind="track").replace(b'"event":', b'"evnt":')]
    write_file(tmp_path / "l" / "2026-03-02" / "t.jsonl", lines)
    run(wh, tmp_path / "l", max_bad_share=0.5)
    assert q(wh, "select event_type, event_name from raw.analytics_events") == [("track", "Content Downloaded")]
    assert q(wh, "select _line, record_ref, reason from raw.quarantine") == [
        (2, "msg-2026-03-02-00000002", "missing key: event (required for track)")]


def test_oversized_line_is_quarantined_without_holding_it(wh, tmp_path):
    big = line(2).replace(b'"name":', b'"pad":"' + b"y" * 5000 + b'","name":')
    write_file(tmp_path / "l" / "2026-03-02" / "big.jsonl", [line(1), big, line(3)])
    res = run(wh, tmp_path / "l", max_bad_share=0.5, max_line_bytes=2000)
    assert res["rows_loaded"] == 2
    assert q(wh, "select _line, reason from raw.quarantine") == [
        (2, f"oversized line: {len(big)} bytes > max_line_bytes 2000")]


def test_oversized_line_spanning_chunks(wh, tmp_path, monkeypatch):
    """A line longer than max_line_bytes that spans several read chunks is skipped chunk by chunk."""
    monkeypatch.setattr(lines, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(lines.read_chunks, "__defaults__", (1000,))
    big = b'{"pad":"' + b"z" * 10_000 + b'"}'
    write_file(tmp_path / "l" / "2026-03-02" / "big.jsonl", [line(1), big, line(3), line(4)])
    res = run(wh, tmp_path / "l", max_bad_share=0.5, max_line_bytes=3000)
    assert res["rows_loaded"] == 3
    assert q(wh, "select _line from raw.analytics_events order by 1") == [(1,), (3,), (4,)]
    assert q(wh, "select _line, reason, length(raw_text) > 0 from raw.quarantine") == [
        (2, f"oversized line: {len(big)} bytes > max_line_bytes 3000", True)]


# ------------------------------------------------------------------------------------------ bad share

def test_too_many_bad_lines_rejects_the_file_and_names_it(wh, tmp_path):
    day = tmp_path / "l" / "2026-03-02"
    bad = write_file(day / "bad.jsonl", [line(i) if i % 5 else b"{nope" for i in range(1, 11)])  # 2 of 10 bad
    good = write_file(day / "good.jsonl", n=20, start=100)

    with pytest.raises(BadShareExceeded) as info:
        run(wh, tmp_path / "l", max_bad_share=0.1)
    msg = str(info.value)
    assert str(bad) in msg
    assert "2 of 10 lines bad (20.00% > max_bad_share 10.00%)" in msg
    assert "malformed JSON ×2" in msg
    # nothing of the bad file is committed; the good file of the same run is
    assert q(wh, "select _source, count(*) from raw.analytics_events group by 1") == [(str(good), 20)]
    assert q(wh, "select count(*) from raw.quarantine") == [(0,)]
    assert q(wh, "select path from ops.file_ledger") == [(str(good),)]
    assert q(wh, "select source, status, rows_read, rows_quarantined from ops.load_log order by status") == [
        (str(good), "loaded", 20, 0), (str(bad), "rejected", 10, 2)]

    # the next day's run does not retry it in its late-file scan (it would fail every day)...
    res = run(wh, tmp_path / "l", DAY + timedelta(days=1), max_bad_share=0.1)
    assert res["files_previously_rejected"] == 1
    assert res["files_loaded"] == 0
    # ...but rerunning its own day with a higher threshold loads it
    res = run(wh, tmp_path / "l", max_bad_share=0.25)
    assert (res["files_loaded"], res["rows_loaded"], res["rows_quarantined"]) == (1, 8, 2)


# ------------------------------------------------------------------------------------------ the ledger

def test_same_file_renamed_or_redropped_is_skipped(wh, tmp_path):
    day = tmp_path / "l" / "2026-03-02"
    first = write_file(day / "events-0000.jsonl", n=30)
    assert run(wh, tmp_path / "l")["rows_loaded"] == 30
    first.rename(day / "events-renamed.jsonl")
    shutil.copy(day / "events-renamed.jsonl", day / "events-copy.jsonl")
    res = run(wh, tmp_path / "l")
    assert (res["files_loaded"], res["files_skipped"], res["rows_loaded"]) == (0, 2, 0)
    assert q(wh, "select count(*) from raw.analytics_events") == [(30,)]
    assert q(wh, "select count(*) from ops.file_ledger") == [(1,)]


def test_two_copies_in_one_run_load_once(wh, tmp_path):
    day = tmp_path / "l" / "2026-03-02"
    write_file(day / "a.jsonl", n=5)
    shutil.copy(day / "a.jsonl", day / "b.jsonl")
    res = run(wh, tmp_path / "l")
    assert (res["files_loaded"], res["files_skipped"]) == (1, 1)
    assert q(wh, "select count(*) from raw.analytics_events") == [(5,)]


def test_late_file_for_an_earlier_day_is_loaded_and_future_days_are_not(wh, tmp_path):
    landing = tmp_path / "l"
    write_file(landing / "2026-03-01" / "events-0000.jsonl", n=4, day="2026-03-01")
    write_file(landing / "2026-03-02" / "events-0000.jsonl", n=6, day="2026-03-02")
    write_file(landing / "2026-03-03" / "events-0000.jsonl", n=8, day="2026-03-03")  # future for this run
    res = run(wh, landing)  # the 2026-03-02 run: loads 03-01 (never loaded) and 03-02, not 03-03
    assert res["rows_loaded"] == 10
    assert q(wh, "select file_date::text, count(*) from ops.file_ledger group by 1 order by 1") == [
        ("2026-03-01", 1), ("2026-03-02", 1)]
    assert [(f["file_date"], f["late"]) for f in res["files"]] == [("2026-03-01", True), ("2026-03-02", False)]

    # a late file arrives for 03-01 after its day was loaded: the 03-03 run picks it up (and 03-03's own file)
    write_file(landing / "2026-03-01" / "events-late.jsonl", n=3, day="2026-03-01", start=1000)
    res = run(wh, landing, DAY + timedelta(days=1))
    assert sorted((f["path"].rsplit("/", 2)[-2], f["rows_loaded"]) for f in res["files"]) == [
        ("2026-03-01", 3), ("2026-03-03", 8)]
    assert res["files_skipped"] == 2  # the two files loaded before (recognised without reading them again)
    assert q(wh, "select count(*) from raw.analytics_events") == [(21,)]


def test_rewritten_file_under_a_loaded_name_is_loaded(wh, tmp_path):
    landing = tmp_path / "l"
    path = write_file(landing / "2026-03-01" / "events.jsonl", n=4, day="2026-03-01")
    run(wh, landing)
    write_file(path, n=4, day="2026-03-01", start=50)  # same name, same size, new content
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + 5))
    res = run(wh, landing)
    assert res["rows_loaded"] == 4
    assert q(wh, "select count(distinct message_id) from raw.analytics_events") == [(8,)]


def test_empty_file_is_a_batch_of_zero_rows(wh, tmp_path):
    (tmp_path / "l" / "2026-03-02").mkdir(parents=True)
    (tmp_path / "l" / "2026-03-02" / "empty.jsonl.gz").write_bytes(b"")
    res = run(wh, tmp_path / "l")
    # an empty .gz (0 bytes) is an empty stream, not a broken one
    assert (res["files_loaded"], res["rows_read"]) == (1, 0)
    assert q(wh, "select status, rows_read from ops.load_log") == [("loaded", 0)]


def test_missing_landing_folder_says_so(wh, tmp_path):
    with pytest.raises(analytics.LoadError, match="does not exist"):
        run(wh, tmp_path / "nowhere")


def test_row_postgres_refuses_is_quarantined_and_the_rest_loads(wh, tmp_path, monkeypatch):
    """If PostgreSQL refuses a row the validator let through, that row is quarantined with PostgreSQL's reason
    and the file is loaded again without it (one transaction, nothing doubled)."""
    real = lines.LineJudge.judge

    def judge(self, raw):  # a validator gap: a timestamp Python accepts and PostgreSQL does not
        verdict, payload = real(self, raw)
        if verdict == lines.LOAD and b"00000003" in raw:
            payload = (*payload[:5], "not-a-timestamp", payload[6])
        return verdict, payload

    monkeypatch.setattr(lines.LineJudge, "judge", judge)
    write_file(tmp_path / "l" / "2026-03-02" / "e.jsonl", n=6)
    res = run(wh, tmp_path / "l", max_bad_share=0.5)
    assert (res["rows_loaded"], res["rows_quarantined"]) == (5, 1)
    [(ln, ref, reason)] = q(wh, "select _line, record_ref, reason from raw.quarantine")
    assert (ln, ref) == (4, "msg-2026-03-02-00000003")
    assert reason.startswith("refused by PostgreSQL: invalid input syntax for type timestamp with time zone")
    assert q(wh, "select count(*), count(distinct _batch_id) from raw.analytics_events") == [(5, 1)]


def test_an_airflow_pendulum_interval_end_is_understood():
    """Airflow passes pendulum datetimes; pendulum 3's astimezone(UTC) is naive, which once made every line bad."""
    import pendulum
    from handoff.load.analytics import LOAD, QUARANTINE, LineJudge

    judge = LineJudge(pendulum.datetime(2026, 11, 25, tz="UTC"))
    ok = (b'{"messageId":"m1","type":"page","anonymousId":"a1","timestamp":"2026-11-24T10:00:00.000Z",'
          b'"receivedAt":"2026-11-24T10:00:01.000Z"}')
    late = ok.replace(b"m1", b"m2").replace(b"2026-11-24T10", b"2026-11-27T10")
    assert judge.judge(ok)[0] == LOAD
    kind, (reason, ref) = judge.judge(late)
    assert kind == QUARANTINE and ref == "m2" and "future" in reason
