"""The landing folder, walked: every file seen gets one outcome in ops.landing_files (loaded, loaded with
quarantined lines, rejected, skipped, each with its reason); unreadable files are rejected and the rest load;
`handoff load analytics --dry-run` lists what a run would do and writes nothing. One module, though long: one
file outcome per test, all against the same ledger."""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from handoff import cli
from handoff.load import analytics, batches, landing_log, lines
from handoff.load.analytics import FilesRejected

from tests.plugins.load.events import line, write_file

DAY = datetime(2026, 3, 2, tzinfo=UTC)
MS = 86_400_000
SEGMENT_0302 = str(int(DAY.timestamp()) * 1000)  # Segment's <day-as-unix-ms> folder of 2026-03-02
SEGMENT_0301 = str(int(DAY.timestamp()) * 1000 - MS)
SEGMENT_0303 = str(int(DAY.timestamp()) * 1000 + MS)
COLUMNS = "relative_path, outcome, reason, file_date::text, rows_read, rows_loaded, rows_quarantined"


def run(wh, landing: Path, day: datetime = DAY, **kw) -> dict:
    return analytics.load_analytics_files(wh.conninfo("loader"), landing, day, day + timedelta(days=1), **kw)


def q(wh, query: str, params=None) -> list[tuple]:
    with psycopg.connect(wh.conninfo("admin")) as conn:
        return conn.execute(query, params).fetchall()


def outcomes(wh) -> list[tuple]:
    return q(wh, f"select {COLUMNS} from ops.landing_files order by relative_path")


UNSUPPORTED_CSV = "unsupported type: .csv (loads .jsonl, .ndjson and .json files, gzipped or not)"


def test_every_supported_name_loads_gzipped_or_not_any_case_any_depth(wh, tmp_path):
    land = tmp_path / "l"
    day = land / "2026-03-02"
    write_file(day / "a.jsonl", n=3)
    write_file(day / "b.JSONL", n=3, start=10)
    write_file(day / "c.json.gz", n=3, start=20)
    write_file(day / "d.NDJSON.GZ", n=3, start=30)
    write_file(day / "e.ndjson", n=3, start=40)
    write_file(day / "hour=01" / "deeper" / "f.Json", n=3, start=50)
    write_file(land / "source-a" / "2026-03-02" / "g.jsonl", n=3, start=60)  # a day folder below another folder

    res = run(wh, land)

    assert (res["files_loaded"], res["rows_read"], res["rows_loaded"], res["rows_quarantined"]) == (7, 21, 21, 0)
    assert res["not_loaded"] == []
    assert outcomes(wh) == [
        ("2026-03-02/a.jsonl", "loaded", None, "2026-03-02", 3, 3, 0),
        ("2026-03-02/b.JSONL", "loaded", None, "2026-03-02", 3, 3, 0),
        ("2026-03-02/c.json.gz", "loaded", None, "2026-03-02", 3, 3, 0),
        ("2026-03-02/d.NDJSON.GZ", "loaded", None, "2026-03-02", 3, 3, 0),
        ("2026-03-02/e.ndjson", "loaded", None, "2026-03-02", 3, 3, 0),
        ("2026-03-02/hour=01/deeper/f.Json", "loaded", None, "2026-03-02", 3, 3, 0),
        ("source-a/2026-03-02/g.jsonl", "loaded", None, "2026-03-02", 3, 3, 0)]
    # the gzipped upper-case one was decompressed (its events are readable), and the rows reconcile with load_log
    assert q(wh, "select count(*) from raw.analytics_events where _source like '%d.NDJSON.GZ'") == [(3,)]
    assert q(wh, "select count(*) from ops.landing_files f join ops.load_log b using (batch_id) where "
                 "b.status = 'loaded' and (f.rows_read, f.rows_loaded, f.rows_quarantined) = "
                 "(b.rows_read, b.rows_loaded, b.rows_quarantined) and f.sha256 = b.sha256") == [(7,)]


def test_segment_export_layout_takes_the_day_from_the_unix_ms_folder(wh, tmp_path):
    land = tmp_path / "bucket"
    src = land / "segment-logs" / "AbC123sourceid"
    write_file(src / SEGMENT_0302 / "1772450000000.f1d8a4ac7ef3.gz", n=4)  # Segment's own name: no .json
    write_file(src / SEGMENT_0301 / "1772360000000.0a1b2c3d4e5f.gz", n=2, day="2026-03-01", start=100)
    write_file(src / SEGMENT_0303 / "1772540000000.99aa88bb77cc.gz", n=5, day="2026-03-03")  # after the interval
    (src / SEGMENT_0302 / "manifest.csv").write_text("not events\n")

    res = run(wh, land)

    assert (res["files_loaded"], res["rows_loaded"]) == (2, 6)
    rel = f"segment-logs/AbC123sourceid/{SEGMENT_0302}"
    assert outcomes(wh) == [
        (f"segment-logs/AbC123sourceid/{SEGMENT_0301}/1772360000000.0a1b2c3d4e5f.gz", "loaded", None, "2026-03-01",
         2, 2, 0),
        (f"{rel}/1772450000000.f1d8a4ac7ef3.gz", "loaded", None, "2026-03-02", 4, 4, 0),
        (f"{rel}/manifest.csv", "skipped", UNSUPPORTED_CSV, "2026-03-02", 0, 0, 0)]
    assert [(f["file_date"], f["late"]) for f in res["files"]] == [("2026-03-01", True), ("2026-03-02", False)]
    assert q(wh, "select file_date::text, count(*) from ops.file_ledger group by 1 order by 1") == [
        ("2026-03-01", 1), ("2026-03-02", 1)]


def test_skipped_files_are_recorded_with_their_reason_and_the_run_stays_green(wh, tmp_path):
    land = tmp_path / "l"
    day = land / "2026-03-02"
    write_file(day / "good.jsonl", n=5)
    (day / "export.csv").write_text("a,b\n")
    (day / "events.parquet").write_bytes(b"PAR1")
    write_file(day / "events.gz", n=2)  # a bare .gz outside a Segment day folder
    (day / "README").write_text("notes\n")
    (day / ".events.jsonl.tmp").write_text("{}\n")  # an upload in progress
    (day / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    write_file(land / "undated.jsonl", n=1)  # outside any day folder
    (land / "2026-03-01").mkdir()
    (land / "2026-03-01" / "loop").symlink_to(land)  # a link back up: looked into once, not forever

    res = run(wh, land)

    assert (res["files_loaded"], res["files_ignored"], res["files_rejected"], res["rows_loaded"]) == (1, 8, 0, 5)
    assert outcomes(wh) == [
        ("2026-03-01/loop/", "skipped", "link to a folder already looked into (a loop)", "2026-03-01", 0, 0, 0),
        ("2026-03-02/.events.jsonl.tmp", "skipped", "hidden file (name starts with '.')", "2026-03-02", 0, 0, 0),
        ("2026-03-02/README", "skipped", "unsupported type: (no extension) (loads .jsonl, .ndjson and .json files, "
         "gzipped or not)", "2026-03-02", 0, 0, 0),
        ("2026-03-02/events.gz", "skipped", "unsupported type: .gz (a .gz loads when it is *.jsonl.gz, *.ndjson.gz "
         "or *.json.gz, or when it sits in a Segment <day-as-unix-ms>/ folder)", "2026-03-02", 0, 0, 0),
        ("2026-03-02/events.parquet", "skipped", "unsupported type: .parquet (loads .jsonl, .ndjson and .json "
         "files, gzipped or not)", "2026-03-02", 0, 0, 0),
        ("2026-03-02/export.csv", "skipped", UNSUPPORTED_CSV, "2026-03-02", 0, 0, 0),
        ("2026-03-02/gone.jsonl", "skipped", f"broken link: it points to {tmp_path / 'nowhere.jsonl'}, which does "
         "not exist", "2026-03-02", 0, 0, 0),
        ("2026-03-02/good.jsonl", "loaded", None, "2026-03-02", 5, 5, 0),
        ("undated.jsonl", "skipped", "not in a day folder (YYYY-MM-DD/ or Segment's <day-as-unix-ms>/): the run "
         "cannot tell which day it belongs to", None, 0, 0, 0)]
    assert [(n["path"], n["outcome"]) for n in res["not_loaded"]] == [
        (r, "skipped") for r in ("2026-03-01/loop/", "2026-03-02/.events.jsonl.tmp", "2026-03-02/README",
                                 "2026-03-02/events.gz", "2026-03-02/events.parquet", "2026-03-02/export.csv",
                                 "2026-03-02/gone.jsonl", "undated.jsonl")]
    # nothing but the good file reached the ledger, load_log or raw
    assert q(wh, "select count(*) from ops.file_ledger") == [(1,)]
    assert q(wh, "select count(*) from ops.load_log") == [(1,)]
    # the eight were recorded together, before the load (one transaction: one xmin), not one transaction each
    assert q(wh, "select count(*), count(distinct xmin::text) from ops.landing_files where outcome = 'skipped'") \
        == [(8, 1)]
    assert q(wh, "select count(distinct xmin::text) from ops.landing_files") == [(2,)]


def test_unreadable_entries_are_rejected_by_name_and_the_other_files_load(wh, tmp_path, caplog):
    land = tmp_path / "l"
    day = land / "2026-03-02"
    write_file(day / "good.jsonl", n=5)
    (day / "folder.jsonl").mkdir()  # a folder named like a file
    write_file(day / "folder.jsonl" / "inside.jsonl", n=1)  # ...is not looked into
    os.mkfifo(day / "pipe.ndjson")  # never opened (opening a FIFO would wait for a writer)

    with pytest.raises(FilesRejected) as info:
        run(wh, land)

    msg = str(info.value)
    assert "2 analytics file(s) rejected" in msg
    assert "2026-03-02/folder.jsonl/: unreadable: a folder named like a data file" in msg
    assert "2026-03-02/pipe.ndjson: unreadable: a FIFO (named pipe), not a regular file; not opened" in msg
    assert not isinstance(info.value, analytics.BadShareExceeded)
    assert outcomes(wh) == [
        ("2026-03-02/folder.jsonl/", "rejected", "unreadable: a folder named like a data file; not loaded and not "
         "looked into (rename it, or move its files into a day folder)", "2026-03-02", 0, 0, 0),
        ("2026-03-02/good.jsonl", "loaded", None, "2026-03-02", 5, 5, 0),
        ("2026-03-02/pipe.ndjson", "rejected", "unreadable: a FIFO (named pipe), not a regular file; not opened",
         "2026-03-02", 0, 0, 0)]
    assert q(wh, "select count(*) from raw.analytics_events") == [(5,)]
    # the task log names them (the Airflow task log is this logger's output)
    assert "2026-03-02/pipe.ndjson" in caplog.text and "2026-03-02/folder.jsonl/" in caplog.text


def test_a_file_that_cannot_be_opened_is_rejected_with_a_sentence(wh, tmp_path, monkeypatch):
    land = tmp_path / "l"
    bad = write_file(land / "2026-03-02" / "locked.jsonl", n=3)
    write_file(land / "2026-03-02" / "ok.jsonl", n=4, start=10)
    real = batches.sha256_file

    def sha256_file(path, *a, **kw):  # root reads a chmod 000 file anyway: fail where the loader opens it
        if Path(path) == bad:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(batches, "sha256_file", sha256_file)
    with pytest.raises(FilesRejected, match=r"2026-03-02/locked.jsonl: unreadable: Permission denied"):
        run(wh, land)
    assert outcomes(wh) == [
        ("2026-03-02/locked.jsonl", "rejected", "unreadable: Permission denied (PermissionError); nothing of it was "
         "loaded — fix the file or its storage, then rerun its day", "2026-03-02", 0, 0, 0),
        ("2026-03-02/ok.jsonl", "loaded", None, "2026-03-02", 4, 4, 0)]
    assert q(wh, "select path from ops.file_ledger") == [(str(land / "2026-03-02" / "ok.jsonl"),)]


class _FailingFile(io.BufferedReader):
    """A file whose second read fails with EIO (a disk or network-storage error mid-file)."""

    reads = 0

    def read(self, *args):
        self.reads += 1
        if self.reads > 1:
            raise OSError(errno.EIO, "Input/output error")
        return super().read(*args)


def test_an_io_error_mid_file_rejects_it_whole_instead_of_cutting_it_short(wh, tmp_path, monkeypatch):
    land = tmp_path / "l"
    flaky = write_file(land / "2026-03-02" / "flaky.jsonl", n=2000)
    write_file(land / "2026-03-02" / "ok.jsonl", n=4, start=10_000)
    monkeypatch.setattr(lines, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(lines.read_chunks, "__defaults__", (4096,))

    def fake_open(path, mode="r", *a, **kw):
        if Path(path) == flaky:
            return _FailingFile(io.FileIO(path, "rb"))
        return open(path, mode, *a, **kw)

    monkeypatch.setattr(lines, "open", fake_open, raising=False)  # the module that reads the file
    with pytest.raises(FilesRejected, match=r"flaky.jsonl: unreadable: Input/output error \(OSError\)"):
        run(wh, land)
    # nothing of the failed file was committed: no events, no quarantine, no ledger or load_log row
    assert q(wh, "select count(*) from raw.analytics_events where _source = %s", [str(flaky)]) == [(0,)]
    assert q(wh, "select count(*) from raw.quarantine") == [(0,)]
    assert q(wh, "select source from ops.load_log") == [(str(land / "2026-03-02" / "ok.jsonl"),)]
    assert [r[:2] for r in outcomes(wh)] == [("2026-03-02/flaky.jsonl", "rejected"), ("2026-03-02/ok.jsonl", "loaded")]

    monkeypatch.undo()  # the storage recovers: the day's rerun loads it whole
    res = run(wh, land)
    assert (res["files_loaded"], res["rows_loaded"], res["files_skipped"]) == (1, 2000, 1)
    assert outcomes(wh)[0][:2] == ("2026-03-02/flaky.jsonl", "loaded")


def test_loaded_with_quarantined_lines_and_rejected_for_bad_lines(wh, tmp_path):
    land = tmp_path / "l"
    day = land / "2026-03-02"
    write_file(day / "some_bad.jsonl", [line(i) if i != 3 else b"{nope" for i in range(1, 11)])  # 1 of 10
    write_file(day / "mostly_bad.jsonl", [line(i) if i >= 27 else b"[]" for i in range(20, 30)])  # 7 of 10
    with pytest.raises(analytics.BadShareExceeded):
        run(wh, land, max_bad_share=0.2)
    assert outcomes(wh) == [
        ("2026-03-02/mostly_bad.jsonl", "rejected", "too many bad lines: 7 of 10 (70.00% > max_bad_share 20.00%); "
         "top reasons: not a JSON object (got array) ×7", "2026-03-02", 10, 0, 7),
        ("2026-03-02/some_bad.jsonl", "loaded_with_quarantine", "1 of 10 lines quarantined (raw.quarantine)",
         "2026-03-02", 10, 9, 1)]
    # the rejected row points at its rejected batch
    assert q(wh, "select b.status from ops.landing_files f join ops.load_log b using (batch_id) "
                 "where f.outcome = 'rejected'") == [("rejected",)]


def test_one_outcome_per_file_and_reruns_do_not_record_it_again(wh, tmp_path):
    land = tmp_path / "l"
    write_file(land / "2026-03-01" / "old.jsonl", n=2, day="2026-03-01")
    write_file(land / "2026-03-02" / "new.jsonl.gz", n=3)
    (land / "2026-03-02" / "export.csv").write_text("x\n")
    (land / "2026-03-02" / "dir.json").mkdir()
    with pytest.raises(FilesRejected):
        run(wh, land)
    first = q(wh, "select relative_path, outcome, first_seen_at, outcome_at, last_seen_at from ops.landing_files "
                  "order by 1")

    with pytest.raises(FilesRejected):  # the same day again: a rejection in its own day fails it again
        run(wh, land)
    res = run(wh, land, DAY + timedelta(days=1))  # the next day: nothing new, and the old rejection does not fail it
    assert (res["files_loaded"], res["files_skipped"], res["files_ignored"], res["files_rejected"]) == (0, 2, 1, 1)
    assert [(n["path"], n["outcome"], n["since"] is not None) for n in res["not_loaded"]] == [
        ("2026-03-02/dir.json/", "rejected", True), ("2026-03-02/export.csv", "skipped", True)]

    again = q(wh, "select relative_path, outcome, first_seen_at, outcome_at, last_seen_at from ops.landing_files "
                  "order by 1")
    assert len(again) == 4  # one row per file, however many runs saw it
    for before, after in zip(first, again, strict=True):
        assert before[:4] == after[:4]  # same outcome, decided at the same time
        if after[1] in ("loaded", "loaded_with_quarantine"):
            assert after[4] == before[4]  # a loaded file is not written again
        else:
            assert after[4] > before[4]  # a file still left out was seen again by the later runs
    assert q(wh, "select count(*) from ops.load_log") == [(2,)]


def test_a_file_loaded_before_landing_files_existed_gets_its_row_from_the_ledger(wh, tmp_path):
    land = tmp_path / "l"
    write_file(land / "2026-03-01" / "old.jsonl", [line(1, "2026-03-01"), b"{bad"], day="2026-03-01")
    run(wh, land, DAY - timedelta(days=1), max_bad_share=0.5)
    q_admin = psycopg.connect(wh.conninfo("admin"), autocommit=True)
    q_admin.execute("delete from ops.landing_files")
    q_admin.close()
    res = run(wh, land)  # the late scan recognises it from the ledger without reading it
    assert res["files_skipped"] == 1
    assert outcomes(wh) == [("2026-03-01/old.jsonl", "loaded_with_quarantine",
                             "1 of 2 lines quarantined (raw.quarantine)", "2026-03-01", 2, 1, 1)]


def test_a_copy_of_loaded_bytes_is_skipped_naming_the_loaded_file(wh, tmp_path):
    land = tmp_path / "l"
    first = write_file(land / "2026-03-02" / "a.jsonl", n=3)
    shutil.copy(first, land / "2026-03-02" / "b.jsonl")
    res = run(wh, land)
    assert (res["files_loaded"], res["files_skipped"]) == (1, 1)
    assert outcomes(wh) == [
        ("2026-03-02/a.jsonl", "loaded", None, "2026-03-02", 3, 3, 0),
        ("2026-03-02/b.jsonl", "skipped", "same bytes as 2026-03-02/a.jsonl, loaded from there in this run",
         "2026-03-02", 0, 0, 0)]


def _refuse_every_row(monkeypatch):
    """PostgreSQL refuses more rows than the loader quarantines one by one (MAX_COPY_RETRIES = 0): a LoadError."""
    real = lines.LineJudge.judge

    def judge(self, raw):
        verdict, payload = real(self, raw)
        if verdict == lines.LOAD and b"2026-03-02-0000010" in raw:  # b.jsonl's lines only
            payload = (*payload[:5], "not-a-timestamp", payload[6])
        return verdict, payload

    monkeypatch.setattr(lines.LineJudge, "judge", judge)
    monkeypatch.setattr(analytics, "MAX_COPY_RETRIES", 0)


def _raise_on_b(monkeypatch):
    """An unexpected exception while b.jsonl loads (the test seam: load_file)."""
    real = analytics.load_file

    def load_file(conn, path, **kw):
        if path.name == "b.jsonl":
            raise RuntimeError("boom")
        return real(conn, path, **kw)

    monkeypatch.setattr(analytics, "load_file", load_file)


@pytest.mark.parametrize(("seam", "error"), [
    (_raise_on_b, r"loading .*b\.jsonl failed, nothing of it was committed: RuntimeError: boom"),
    (_refuse_every_row, r"b\.jsonl: PostgreSQL refused more than 0 rows")])
def test_a_load_that_stops_the_run_still_leaves_one_row_per_file(wh, tmp_path, monkeypatch, seam, error):
    from handoff.load import landing

    land = tmp_path / "l"
    day = land / "2026-03-02"
    write_file(day / "a.jsonl", n=3)
    write_file(day / "b.jsonl", n=3, start=100)  # its load fails
    write_file(day / "c.jsonl", n=3, start=200)  # a file the run had still to load
    (day / "d.csv").write_text("x\n")  # skip and reject entries after the failing file
    (day / "e.ndjson").mkdir()
    write_file(land / "undated.jsonl", n=1, start=300)
    seam(monkeypatch)

    with pytest.raises(analytics.LoadError, match=error):
        run(wh, land)

    seen = [e.relative for e in landing.scan(land, DAY, DAY + timedelta(days=1))]
    assert q(wh, "select relative_path, count(*) from ops.landing_files group by 1 order by 1") == [
        (r, 1) for r in sorted(seen)]
    rows = {r[0]: r[1:3] for r in outcomes(wh)}
    assert rows["2026-03-02/a.jsonl"] == ("loaded", None)
    outcome, reason = rows["2026-03-02/b.jsonl"]
    assert outcome == "rejected"
    assert reason.startswith("load failed, nothing of it was committed: ")
    assert reason.endswith("; the run stopped here, the next run tries it again")
    assert ("RuntimeError: boom" in reason) if seam is _raise_on_b else ("LoadError: " in reason)
    assert rows["2026-03-02/c.jsonl"][0] == "skipped"
    assert rows["2026-03-02/c.jsonl"][1].startswith("not loaded: the run stopped at 2026-03-02/b.jsonl (a load "
                                                    "failed: ")
    assert rows["2026-03-02/d.csv"] == ("skipped", UNSUPPORTED_CSV)
    assert rows["2026-03-02/e.ndjson/"][0] == "rejected"
    assert rows["undated.jsonl"][0] == "skipped"
    # the failing file's attempt is in load_log (failed), with the bytes it was about; nothing of it committed
    assert q(wh, "select status, sha256 is not null from ops.load_log where source like '%%b.jsonl'") == [
        ("failed", True)]
    assert q(wh, "select count(*) from raw.analytics_events where _source like '%%b.jsonl'") == [(0,)]

    monkeypatch.undo()  # fixed: the day's rerun loads b and c, still one row per file
    with pytest.raises(FilesRejected):  # e.ndjson/ is still a folder named like a data file
        run(wh, land)
    assert q(wh, "select relative_path, count(*) from ops.landing_files group by 1 order by 1") == [
        (r, 1) for r in sorted(seen)]
    assert [r[:2] for r in outcomes(wh) if r[0].endswith(".jsonl")] == [
        ("2026-03-02/a.jsonl", "loaded"), ("2026-03-02/b.jsonl", "loaded"), ("2026-03-02/c.jsonl", "loaded"),
        ("undated.jsonl", "skipped")]


@pytest.mark.parametrize("how", ["symlink", "copy"])
def test_the_landing_folder_mounted_elsewhere_is_already_loaded_not_a_duplicate(wh, tmp_path, how):
    """A worker that mounts the landing folder at another path (Celery/Kubernetes workers) sees the same files:
    identity is the path under the landing folder, so they are already loaded, with no second row."""
    land = tmp_path / "worker-a" / "landing"
    write_file(land / "2026-03-01" / "old.jsonl", n=2, day="2026-03-01")
    write_file(land / "2026-03-02" / "new.jsonl.gz", n=3)
    (land / "2026-03-02" / "export.csv").write_text("x\n")
    run(wh, land)
    loaded = q(wh, "select relative_path, path, outcome, sha256, outcome_at, last_seen_at from ops.landing_files "
                   "where outcome = 'loaded' order by 1")
    assert [r[:3] for r in loaded] == [("2026-03-01/old.jsonl", str(land / "2026-03-01" / "old.jsonl"), "loaded"),
                                      ("2026-03-02/new.jsonl.gz", str(land / "2026-03-02" / "new.jsonl.gz"), "loaded")]
    assert q(wh, "select relative_path from ops.file_ledger order by 1") == [
        ("2026-03-01/old.jsonl",), ("2026-03-02/new.jsonl.gz",)]

    other = tmp_path / "worker-b" / "mnt" / "landing"
    other.parent.mkdir(parents=True)
    if how == "symlink":  # the same files (the late file's mtime is older than its load: recognised unread)
        other.symlink_to(land, target_is_directory=True)
    else:  # copies with new mtimes: every file is hashed, and its bytes are in the ledger under its own name
        shutil.copytree(land, other, copy_function=shutil.copy)

    assert [(p.relative, p.action) for p in landing_log.dry_run(wh.conninfo("loader"), other, DAY,
                                                             DAY + timedelta(days=1))] == [
        ("2026-03-01/old.jsonl", "already_loaded"), ("2026-03-02/export.csv", "skip"),
        ("2026-03-02/new.jsonl.gz", "already_loaded")]
    for day in (DAY, DAY + timedelta(days=1)):  # the day again, and the next day's late-file scan
        res = run(wh, other, day)
        assert (res["files_loaded"], res["files_skipped"], res["files_ignored"]) == (0, 2, 1)
        assert [(n["path"], n["outcome"]) for n in res["not_loaded"]] == [("2026-03-02/export.csv", "skipped")]
    # one row per file, the loaded rows untouched (path: where they were loaded from); nothing called a duplicate
    assert q(wh, "select relative_path, count(*) from ops.landing_files group by 1 order by 1") == [
        ("2026-03-01/old.jsonl", 1), ("2026-03-02/export.csv", 1), ("2026-03-02/new.jsonl.gz", 1)]
    assert q(wh, "select relative_path, path, outcome, sha256, outcome_at, last_seen_at from ops.landing_files "
                 "where outcome = 'loaded' order by 1") == loaded
    assert q(wh, "select count(*) from ops.landing_files where reason like 'same bytes%%'") == [(0,)]
    # a row still left out moves with the run that last saw it
    assert q(wh, "select path from ops.landing_files where outcome = 'skipped'") == [
        (str(other / "2026-03-02" / "export.csv"),)]
    assert q(wh, "select count(*) from ops.load_log") == [(2,)]
    assert q(wh, "select count(*) from raw.analytics_events") == [(5,)]


def test_a_file_ledgered_before_relative_paths_is_recognised_under_another_mount(wh, tmp_path):
    """Ledger rows from before file_ledger.relative_path (null there) match on the path's tail."""
    land = tmp_path / "worker-a" / "landing"
    write_file(land / "2026-03-02" / "a.jsonl", n=3)
    run(wh, land)
    with psycopg.connect(wh.conninfo("admin"), autocommit=True) as conn:
        conn.execute("update ops.file_ledger set relative_path = null")
        conn.execute("delete from ops.landing_files")
    other = tmp_path / "worker-b" / "landing"
    other.parent.mkdir()
    other.symlink_to(land, target_is_directory=True)
    res = run(wh, other)
    assert (res["files_loaded"], res["files_skipped"], res["not_loaded"]) == (0, 1, [])
    assert outcomes(wh) == [("2026-03-02/a.jsonl", "loaded", None, "2026-03-02", 3, 3, 0)]


# ------------------------------------------------------------------------------------------ the command line

def _landing_for_the_cli(tmp_path) -> Path:
    land = tmp_path / "l"
    write_file(land / "2026-03-01" / "loaded.jsonl", n=2, day="2026-03-01")
    write_file(land / "2026-03-02" / "new.JSON.gz", n=3)
    (land / "2026-03-02" / "export.csv").write_text("x\n")
    (land / "2026-03-02" / "gone.jsonl").symlink_to(tmp_path / "missing")
    (land / "2026-03-02" / "dir.ndjson").mkdir()
    write_file(land / "2026-03-03" / "tomorrow.jsonl", n=1, day="2026-03-03")
    return land


@pytest.fixture
def cli_wh(wh, monkeypatch):
    """The CLI pointed at the test database."""
    from handoff import warehouse

    monkeypatch.setattr(warehouse, "target", lambda: dataclasses.replace(wh, local=False))
    return wh


def test_dry_run_lists_every_file_and_writes_nothing(cli_wh, tmp_path, capsys):
    land = _landing_for_the_cli(tmp_path)
    run(cli_wh, land, DAY - timedelta(days=1))  # 2026-03-01 is loaded

    before = q(cli_wh, "select (select count(*) from ops.landing_files), (select count(*) from ops.load_log), "
                       "(select count(*) from raw.analytics_events)")
    assert cli.main(["load", "analytics", "--dry-run", "--landing", str(land), "--date", "2026-03-02"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"{land}: what the run for 2026-03-02 (interval 2026-03-02T00:00Z → 2026-03-03T00:00Z) "
                      "would do; nothing written")
    assert [ln.split(None, 1) for ln in out[1:-1]] == [
        ["2026-03-01/loaded.jsonl", "already loaded (ledger)"],
        ["2026-03-02/dir.ndjson/", "reject: unreadable: a folder named like a data file; not loaded and not looked "
                                   "into (rename it, or move its files into a day folder)"],
        ["2026-03-02/export.csv", f"skip: {UNSUPPORTED_CSV}"],
        ["2026-03-02/gone.jsonl", f"skip: broken link: it points to {tmp_path / 'missing'}, which does not exist"],
        ["2026-03-02/new.JSON.gz", "load (2026-03-02)"],
        ["2026-03-03/tomorrow.jsonl", "later: its day (2026-03-03) is after this run's interval: the run for that "
                                      "day looks at it"]]
    assert out[-1] == "6 entries: 1 load, 1 already loaded, 2 skip, 1 reject, 1 later"
    after = q(cli_wh, "select (select count(*) from ops.landing_files), (select count(*) from ops.load_log), "
                      "(select count(*) from raw.analytics_events)")
    assert after == before


def test_load_analytics_loads_now_and_fails_naming_the_rejected_file(cli_wh, tmp_path, capsys):
    land = _landing_for_the_cli(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["load", "analytics", "--landing", str(land), "--date", "2026-03-02"])
    assert str(info.value).startswith("handoff: error: 1 analytics file(s) rejected")
    assert "2026-03-02/dir.ndjson/: unreadable: a folder named like a data file" in str(info.value)
    assert q(cli_wh, "select relative_path from ops.landing_files where outcome = 'loaded' order by 1") == [
        ("2026-03-01/loaded.jsonl",), ("2026-03-02/new.JSON.gz",)]
    (land / "2026-03-02" / "dir.ndjson").rmdir()
    assert cli.main(["load", "analytics", "--landing", str(land), "--date", "2026-03-02"]) == 0
    out = capsys.readouterr().out
    assert "files_loaded: 0\nfiles_skipped: 2\nfiles_ignored: 2\nfiles_rejected: 0\n" in out


def test_load_cli_errors_say_what_to_do(cli_wh, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["load", "analytics", "--dry-run", "--landing", str(tmp_path / "nowhere")])
    assert str(info.value) == (f"handoff: error: the landing folder {tmp_path / 'nowhere'} does not exist or is "
                               "not a folder")
    with pytest.raises(SystemExit) as info:
        cli.main(["load"])
    assert info.value.code == 2
    assert "the following arguments are required: SOURCE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["load", "analytics", "--help"])
    assert info.value.code == 0
    assert "--dry-run" in capsys.readouterr().out


def test_handoff_runs_summary_names_the_files_the_run_left_out(cli_wh, tmp_path, capsys):
    land = _landing_for_the_cli(tmp_path)
    (land / "2026-03-02" / "dir.ndjson").rmdir()
    run(cli_wh, land)  # an earlier run: its skips are reported by later runs only if they see the files again
    since = datetime.now(UTC)
    cli._report_landing(since)
    assert capsys.readouterr().err == ""
    (land / "2026-03-02" / "gone.jsonl").unlink()
    run(cli_wh, land)
    cli._report_landing(since)
    assert capsys.readouterr().err.splitlines() == [
        "[handoff] analytics landing folder: 1 file(s) not loaded (ops.landing_files):",
        f"[handoff]   skipped 2026-03-02/export.csv: {UNSUPPORTED_CSV}"]


def test_the_demo_summary_counts_the_landing_outcomes_and_names_the_problems(wh, tmp_path):
    from handoff import demo

    land = _landing_for_the_cli(tmp_path)
    with pytest.raises(FilesRejected):
        run(wh, land)
    text = demo.summary(dataclasses.replace(wh, local=False), DAY.date(), 1.0)
    assert ("Analytics landing folder (ops.landing_files): 2 files loaded, 0 loaded with quarantined lines, "
            "2 skipped, 1 rejected") in text
    assert "  rejected 2026-03-02/dir.ndjson/: unreadable: a folder named like a data file" in text
    assert f"  skipped 2026-03-02/export.csv: {UNSUPPORTED_CSV}" in text


def test_the_dry_runs_walk_of_later_days_stops_at_a_loop_as_the_runs_walk_does(tmp_path):
    """The walk of days after the interval (listed by --dry-run) has the main walk's guard: a link back to a folder
    already walked is listed once as a loop, not followed until the system gives up (ELOOP)."""
    from handoff.load import landing

    land = tmp_path / "l"
    write_file(land / "2026-03-02" / "a.jsonl", n=1)
    write_file(land / "2026-03-03" / "b.jsonl", n=1, day="2026-03-03")
    (land / "2026-03-03" / "hour=01").mkdir()
    back = land / "2026-03-03" / "hour=01" / "back"
    back.symlink_to(land / "2026-03-03")  # a link back to the later day's folder
    later = ("2026-03-03/b.jsonl", "later", "its day (2026-03-03) is after this run's interval: the run for that "
                                            "day looks at it")
    loop = "link to a folder already looked into (a loop)"

    def listed() -> list[tuple]:
        return [(e.relative, e.action, e.reason)
                for e in landing.scan(land, DAY, DAY + timedelta(days=1), include_later=True)]

    assert listed() == [("2026-03-02/a.jsonl", "load", None), later, ("2026-03-03/hour=01/back/", "skip", loop)]
    back.unlink()
    (land / "2026-03-03" / "up").symlink_to(land)  # a link back to the landing folder itself
    assert listed() == [("2026-03-02/a.jsonl", "load", None), later, ("2026-03-03/up/", "skip", loop)]
    # the run itself does not walk the later day at all
    assert [e.relative for e in landing.scan(land, DAY, DAY + timedelta(days=1))] == ["2026-03-02/a.jsonl"]
