"""`vidgo-async batch` (and `demo`, `download`): the default journal, account refusals, progress."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
import sys
from pathlib import Path

import pytest
from cli_support import api_env, environ, one_line, run_cli

from vidgo_async import VidgoClient
from vidgo_async.testing import FakeVidgo, Fault

pytestmark = pytest.mark.asyncio

_FAST = ("--max-polls-per-second", "500")


def _pairs(path: Path, count: int, *, bad: str = "") -> Path:
    path.write_text("task_id,audio_id\n" + "".join(f"m,a{i}\n" for i in range(count)) + bad)
    return path


async def test_batch_journals_by_default_and_a_rerun_converts_nothing_twice(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """Without --journal, ./vidgo-journal.sqlite is kept; the same batch again submits nothing."""
    source = _pairs(tmp_path / "pairs.csv", 4)
    first = await run_cli("batch", str(source), *_FAST, env=api_env(vidgo_fake))
    again = await run_cli("batch", str(source), *_FAST, "--json", env=api_env(vidgo_fake))
    assert (first.code, again.code) == (0, 0), again.err
    assert (tmp_path / "vidgo-journal.sqlite").is_file()
    assert "vidgo-journal.sqlite" in first.err  # the summary says where it is
    assert vidgo_fake.request_count("submit") == 4
    assert all(json.loads(line)["ok"] for line in again.out.splitlines())


async def test_input_from_a_pipe_is_read_once(vidgo_fake: FakeVidgo, tmp_path: Path) -> None:
    """A named pipe (or `<(...)`) as the input is read once: every pair is converted; it
    was read a second time to count its rows, found empty, or hung the command."""
    fifo = tmp_path / "pairs.csv"
    os.mkfifo(fifo)

    def write() -> None:
        with fifo.open("w") as stream:  # blocks until the command opens the pipe
            stream.write("task_id,audio_id\n" + "".join(f"m,a{i}\n" for i in range(3)))

    writer = asyncio.ensure_future(asyncio.to_thread(write))
    try:
        ran = await run_cli("batch", str(fifo), "--no-journal", *_FAST, env=api_env(vidgo_fake))
    finally:
        if not writer.done():  # the command never opened the pipe: let the writer go
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        with contextlib.suppress(OSError):
            await asyncio.wait_for(writer, 5)
    assert ran.code == 0, ran.err
    assert vidgo_fake.request_count("submit") == 3


@pytest.mark.parametrize("target", ["input", "journal"])
async def test_output_naming_the_input_or_the_journal_is_a_usage_error(
    vidgo_fake: FakeVidgo, tmp_path: Path, target: str
) -> None:
    """`--output` naming the input or the journal would empty it: exit 2, before any
    request, and the file is untouched (the input was emptied, the journal replaced)."""
    source = _pairs(tmp_path / "pairs.csv", 2)
    journal = tmp_path / "wav.sqlite"
    first = await run_cli(
        "batch", str(source), "--journal", str(journal), *_FAST, env=api_env(vidgo_fake)
    )
    assert first.code == 0, first.err
    named = source if target == "input" else journal
    before = named.read_bytes()
    ran = await run_cli(
        "batch",
        str(source),
        "--journal",
        str(journal),
        "--output",
        str(named),
        *_FAST,
        env=api_env(vidgo_fake),
    )
    assert ran.code == 2 and one_line(ran.err), ran.err
    assert f"is the {target}" in ran.err
    assert named.read_bytes() == before
    assert vidgo_fake.request_count("submit") == 2


async def _head_1(
    fake: FakeVidgo, *args: str, cwd: Path | None = None
) -> tuple[bytes, int | None, str]:
    """`vidgo-async batch ARGS | head -1`: the line read, the exit status, stderr."""
    read, write = os.pipe()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "vidgo_async", "batch", *args, *_FAST),
        stdout=write,
        stderr=asyncio.subprocess.PIPE,
        env=environ(api_env(fake)),
        cwd=cwd,
    )
    os.close(write)
    with os.fdopen(read, "rb") as output:
        first = await asyncio.to_thread(output.readline)  # as `head -1` does, then closes
    _, err = await asyncio.wait_for(process.communicate(), 60)
    return first, process.returncode, err.decode()


async def test_output_closed_early_stops_the_batch_saying_so(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """`batch ... | head -1`: the batch stops, says on stderr why (it exited 1 without a
    word), and its journal keeps every accepted task for a re-run."""
    source = _pairs(tmp_path / "pairs.csv", 200)
    first, code, err = await _head_1(vidgo_fake, str(source), "--json", "--concurrency", "8")
    assert json.loads(first)["ok"]
    assert code == 1
    assert "output was closed" in err and "Traceback" not in err
    rerun = await run_cli("batch", str(source), *_FAST, env=api_env(vidgo_fake))
    assert rerun.code == 0, rerun.err
    assert vidgo_fake.request_count("submit") == 200  # nothing converted twice


async def test_batch_prints_each_paid_wav_url_on_stdout(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """Without --json, each success is a tab-separated line on stdout naming its WAV URL
    (ids may hold spaces): with --no-journal the URLs were printed nowhere, and a
    re-run only met 409s."""
    source = tmp_path / "pairs.csv"
    source.write_text("task_id,audio_id\nm,a0\nm,a 1 http://elsewhere/x.wav\n")
    ran = await run_cli("batch", str(source), "--no-journal", *_FAST, env=api_env(vidgo_fake))
    assert ran.code == 0, ran.err
    lines = sorted(line.split("\t") for line in ran.out.splitlines())
    assert [fields[:3] for fields in lines] == [
        ["ok", "m", "a 1 http://elsewhere/x.wav"],
        ["ok", "m", "a0"],
    ], ran.out
    for fields in lines:
        assert len(fields) == 4 and fields[3].startswith(vidgo_fake.url), fields


async def test_a_download_refused_by_storage_is_printed_unsaved_and_stops_nothing(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """A 403 from the storage host on one download: that pair's paid URL is printed
    (unsaved), the other pairs are converted and saved, and the exit is 1; the 403
    was taken for the API refusing the account (exit 3, the rest never converted)."""
    source = _pairs(tmp_path / "pairs.csv", 6)
    vidgo_fake.inject(Fault.http_error(403), route="files")
    args = ("batch", str(source), "--no-journal", "--download", str(tmp_path / "wavs"))
    ran = await run_cli(*args, "--concurrency", "1", *_FAST, env=api_env(vidgo_fake))
    assert ran.code == 1, ran.err
    outcomes = sorted(line.split("\t")[0] for line in ran.out.splitlines())
    assert outcomes == ["ok"] * 5 + ["unsaved"], ran.out
    assert vidgo_fake.request_count("submit") == 6
    assert len(list((tmp_path / "wavs").glob("*.wav"))) == 5


async def test_output_keeps_the_result_whose_stdout_line_met_a_closed_pipe(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """`batch --output out.jsonl | head -1`: every result the journal settled is in
    out.jsonl; the one whose stdout line met the closed pipe was missing."""
    source = _pairs(tmp_path / "pairs.csv", 50)
    output = tmp_path / "out.jsonl"
    args = (str(source), "--output", str(output), "--concurrency", "4")
    _, code, _ = await _head_1(vidgo_fake, *args, cwd=tmp_path)
    assert code == 1
    with sqlite3.connect(tmp_path / "vidgo-journal.sqlite") as db:
        finished = {
            a for (a,) in db.execute("SELECT audio_id FROM conversions WHERE state = 'finished'")
        }
    written = {json.loads(line)["audio_id"] for line in output.read_text().splitlines()}
    assert finished and finished <= written, (finished, written)


async def test_a_closed_standard_input_is_a_usage_error(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """`batch - <&-`: exit 2 saying standard input cannot be read (an internal error)."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "vidgo_async", "batch", "-", "--no-journal"),
        stdin=None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ(api_env(vidgo_fake)),
        preexec_fn=lambda: os.close(0),  # as `<&-` leaves it
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2, err
    assert b"cannot read standard input" in err and b"internal error" not in err
    assert vidgo_fake.request_count("submit") == 0


async def test_no_journal_keeps_none(vidgo_fake: FakeVidgo, tmp_path: Path) -> None:
    """`--no-journal` writes no journal file anywhere."""
    source = _pairs(tmp_path / "pairs.csv", 2)
    ran = await run_cli("batch", str(source), "--no-journal", *_FAST, env=api_env(vidgo_fake))
    assert ran.code == 0, ran.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.csv"]


@pytest.mark.parametrize(
    ("journal", "needle"),
    [("folder", "is a folder"), ("pairs.csv", "not a SQLite journal"), ("no/j.db", "no")],
    ids=["folder", "not-sqlite", "missing-folder"],
)
async def test_unusable_journal_is_a_usage_error_before_any_request(
    vidgo_fake: FakeVidgo, tmp_path: Path, journal: str, needle: str
) -> None:
    """A --journal that is a folder, not SQLite, or in no folder: exit 2, one line, no request."""
    (tmp_path / "folder").mkdir()
    source = _pairs(tmp_path / "pairs.csv", 2)
    ran = await run_cli("batch", str(source), "--journal", journal, env=api_env(vidgo_fake))
    assert ran.code == 2, ran.err
    assert one_line(ran.err) and "--journal" in ran.err and needle in ran.err
    assert vidgo_fake.requests == []


async def test_out_of_credits_stops_the_batch_and_a_rerun_finishes_it(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """A 402 stops the batch's input at once (exit 3, one message), its 3 paid tasks are
    waited on and written; a re-run converts only the rest."""
    vidgo_fake.credits = 3
    source = _pairs(tmp_path / "pairs.csv", 20)
    output = tmp_path / "results.jsonl"
    args = ("batch", str(source), "--concurrency", "1", "--output", str(output), *_FAST)
    ran = await run_cli(*args, env=api_env(vidgo_fake))
    assert ran.code == 3, ran.err
    stops = [line for line in ran.err.splitlines() if line.startswith("vidgo-async:")]
    assert len(stops) == 1 and "InsufficientCreditsError" in stops[0] and "credits" in stops[0]
    assert "17 row(s) not converted" in stops[0] and "Traceback" not in ran.err
    assert vidgo_fake.request_count("submit") < 8  # stopped, not tried on every pair
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert any(w["error_type"] == "InsufficientCreditsError" for w in written)
    assert sum(w["ok"] for w in written) == 3

    vidgo_fake.credits = 100
    rerun = await run_cli("batch", str(source), *_FAST, env=api_env(vidgo_fake))
    assert rerun.code == 0, rerun.err
    assert all(vidgo_fake.accept_count[f"a{i}"] == 1 for i in range(20))


async def test_a_batch_out_of_credits_prints_the_urls_it_paid_for(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """Credits for 5 of 20 pairs, no journal: the 5 paid conversions are waited on and
    their URLs printed before the exit 3; the stop left their waits, and their URLs
    were printed nowhere (a re-run met 409s naming no task)."""
    vidgo_fake.credits = 5
    for i in range(20):
        vidgo_fake.set_duration(f"a{i}", run_time=0.5)
    source = _pairs(tmp_path / "pairs.csv", 20)
    ran = await run_cli("batch", str(source), "--no-journal", *_FAST, env=api_env(vidgo_fake))
    assert ran.code == 3, ran.err
    printed = [line.split("\t") for line in ran.out.splitlines()]
    assert len(printed) == 5 and all(fields[0] == "ok" for fields in printed), ran.out
    assert sum(vidgo_fake.accept_count.values()) == 5


async def test_a_refused_key_met_only_by_a_resumed_submit_exits_3(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """A re-run whose one pair a killed run left mid-submit, with a key now refused: the
    pair may have been paid for (said so), the account's refusal is named, exit 3; it
    exited 1 without a word of the key."""
    journal = tmp_path / "j.sqlite"
    made = tmp_path / "made.csv"
    made.write_text("task_id,audio_id\nm,other\n")
    first = await run_cli(
        "batch", str(made), "--journal", str(journal), *_FAST, env=api_env(vidgo_fake)
    )
    assert first.code == 0, first.err  # the journal, bound to this API
    with contextlib.closing(sqlite3.connect(journal)) as db, db:
        db.execute(
            "INSERT INTO conversions (source_task_id, audio_id, state, updated_at)"
            " VALUES ('m', 'a0', 'submitting', 0)"
        )
    source = _pairs(tmp_path / "pairs.csv", 1)
    env = api_env(vidgo_fake, VIDGO_API_KEY="wrong-key")
    again = await run_cli("batch", str(source), "--journal", str(journal), *_FAST, env=env)
    assert again.code == 3, again.err
    assert "SubmitOutcomeUnknownError" in again.err and "API key" in again.err


async def test_refused_key_stops_a_batch_with_exit_3(vidgo_fake: FakeVidgo, tmp_path: Path) -> None:
    """A 401 on a batch: exit 3, the key advice once, no failure line per pair."""
    source = _pairs(tmp_path / "pairs.csv", 10)
    env = api_env(vidgo_fake, VIDGO_API_KEY="wrong-key")
    ran = await run_cli("batch", str(source), "--concurrency", "1", env=env)
    assert ran.code == 3, ran.err
    assert ran.err.count("AuthenticationError") == 2  # the summary row and the message
    assert "failed m a" not in ran.err and "--api-key" in ran.err


async def test_plain_progress_counts_skipped_rows_apart(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """Skipped input rows are counted as skipped, never as in flight, in the progress line."""
    source = _pairs(tmp_path / "pairs.csv", 3, bad="m,\nm,x,y\n")
    ran = await run_cli("batch", str(source), *_FAST, env=api_env(vidgo_fake))
    assert ran.code == 1
    status = [line for line in ran.err.splitlines() if "in flight" in line]
    assert status[-1].startswith("5/5 rows: 3 ok, 0 failed, 2 skipped, 0 in flight")


async def test_demo_prints_failures_and_summary_only(tmp_path: Path) -> None:
    """`demo` prints no line per success (unless -v); its failures and summary, yes."""
    quiet = await run_cli("demo", "--count", "60", "--with-failures")
    loud = await run_cli("demo", "--count", "5", "-v")
    assert quiet.code == 1 and loud.code == 0, loud.err
    assert not [line for line in quiet.err.splitlines() if line.startswith("ok ")]
    assert len([line for line in quiet.err.splitlines() if line.startswith("failed ")]) == 2
    assert re.search(r"^succeeded +58$", quiet.err, re.MULTILINE)
    assert len([line for line in loud.err.splitlines() if line.startswith("ok ")]) == 5


async def test_download_needs_no_api_key(vidgo_fake: FakeVidgo, tmp_path: Path) -> None:
    """`download URL DEST` works without VIDGO_API_KEY: it never sends one."""
    async with VidgoClient(vidgo_fake.api_key, base_url=vidgo_fake.url) as client:
        url = await client.convert_to_wav("m", "a1")
    env = {"VIDGO_BASE_URL": vidgo_fake.url}  # loopback storage is allowed for a loopback API
    ran = await run_cli("download", url, "track.wav", env=env)
    assert ran.code == 0, ran.err
    assert (tmp_path / "track.wav").read_bytes()[:4] == b"RIFF"


async def test_output_is_written_line_by_line_and_journal_records_each_pair(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """Each --output line is a result; the default journal holds every pair as finished."""
    source = _pairs(tmp_path / "pairs.csv", 5)
    output = tmp_path / "out.jsonl"
    args = ("batch", str(source), "--output", str(output), *_FAST)
    ran = await run_cli(*args, env=api_env(vidgo_fake))
    assert ran.code == 0, ran.err
    assert sorted(json.loads(line)["audio_id"] for line in output.read_text().splitlines()) == [
        f"a{i}" for i in range(5)
    ]
    with sqlite3.connect(tmp_path / "vidgo-journal.sqlite") as db:
        states = db.execute("SELECT state, COUNT(*) FROM conversions GROUP BY state").fetchall()
    assert states == [("finished", 5)]


@pytest.mark.parametrize("flag", ["--journal", "--shared-quota"], ids=["journal", "shared-quota"])
async def test_a_connection_string_of_another_form_is_not_printed(
    vidgo_fake: FakeVidgo, tmp_path: Path, flag: str
) -> None:
    """A connection string that is not a postgresql:// URL is a usage error that does not
    print it (its password was in the error line)."""
    source = _pairs(tmp_path / "pairs.csv", 1)
    dsn = "postgresql+asyncpg://app:SECRET-PW@db.example/app"
    ran = await run_cli("batch", str(source), flag, dsn, env=api_env(vidgo_fake))
    assert ran.code == 2, ran.err
    assert "SECRET-PW" not in ran.err and "SECRET-PW" not in ran.out
    assert vidgo_fake.requests == []


async def test_batch_keeps_its_submits_under_max_submits_per_second(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """``--max-submits-per-second 3``: six pairs reach the server at most three submits
    in any one-second span."""
    source = _pairs(tmp_path / "pairs.csv", 6)
    ran = await run_cli(
        "batch", str(source), "--no-journal", *_FAST, "--max-submits-per-second", "3",
        env=api_env(vidgo_fake),
    )  # fmt: skip
    assert ran.code == 0, ran.err
    sent = sorted(r.at for r in vidgo_fake.requests if r.route == "submit")
    assert len(sent) == 6
    assert all(later - earlier >= 0.95 for earlier, later in zip(sent, sent[3:], strict=False))


async def test_a_batch_with_stderr_closed_runs_and_prints_its_urls(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """`batch pairs.csv 2>&-` (a daemon's closed stderr): the batch runs and prints its
    URLs on stdout; asking the closed stderr whether it was a terminal was an internal
    error before any pair."""
    source = _pairs(tmp_path / "pairs.csv", 2)
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "vidgo_async", "batch", str(source), "--no-journal", *_FAST),
        stdout=asyncio.subprocess.PIPE,
        stderr=None,
        env=environ(api_env(vidgo_fake)),
        preexec_fn=lambda: os.close(2),  # as `2>&-` leaves it
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out
    assert [line.split("\t")[0] for line in out.decode().splitlines()] == ["ok", "ok"], out
