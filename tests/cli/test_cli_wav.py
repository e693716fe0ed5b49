"""`vidgo-async wav`: its download checks, its journal, and the URL that is never lost."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_support import api_env, one_line, run_cli

from vidgo_async import wav_file_name
from vidgo_async.testing import FakeVidgo, Fault

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize(
    ("dest", "needle"),
    [("no-such-folder/track.wav", "does not exist"), ("track.wav", "--overwrite")],
    ids=["missing-folder", "existing-file"],
)
async def test_download_dest_is_checked_before_the_submit(
    vidgo_fake: FakeVidgo, tmp_path: Path, dest: str, needle: str
) -> None:
    """An unusable --download DEST exits 2 with one line, and nothing is submitted."""
    (tmp_path / "track.wav").write_bytes(b"keep me")
    ran = await run_cli("wav", "m", "a1", "--download", dest, env=api_env(vidgo_fake))
    assert ran.code == 2, ran.err
    assert one_line(ran.err) and needle in ran.err and "overwrite=" not in ran.err
    assert vidgo_fake.request_count("submit") == 0
    assert (tmp_path / "track.wav").read_bytes() == b"keep me"


async def test_overwrite_replaces_an_existing_file(vidgo_fake: FakeVidgo, tmp_path: Path) -> None:
    """`wav --download FILE --overwrite` replaces FILE with the WAV and exits 0."""
    target = tmp_path / "track.wav"
    target.write_bytes(b"old")
    ran = await run_cli(
        "wav", "m", "a1", "--download", "track.wav", "--overwrite", env=api_env(vidgo_fake)
    )
    assert ran.code == 0, ran.err
    assert target.read_bytes()[:4] == b"RIFF"


async def test_download_into_a_folder_names_the_file_after_the_track(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """`wav --download DIR` saves DIR/<audio_id>.wav."""
    (tmp_path / "wavs").mkdir()
    ran = await run_cli("wav", "m", "a1", "--download", "wavs", env=api_env(vidgo_fake))
    assert ran.code == 0, ran.err
    assert (tmp_path / "wavs" / "a1.wav").read_bytes()[:4] == b"RIFF"


async def test_wav_and_batch_downloads_name_a_track_alike(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """`wav --download DIR` and `batch --download DIR` name a track's file alike (they
    used to differ for ids that are not safe file names): `vidgo_async.wav_file_name`."""
    (tmp_path / "wavs").mkdir()
    (tmp_path / "pairs.csv").write_text("task_id,audio_id\nm,tr/ack 2\n")
    env = api_env(vidgo_fake)
    for args in (("wav", "m", "tr/ack 1"), ("batch", "pairs.csv")):
        ran = await run_cli(*args, "--download", "wavs", "--no-journal", env=env)
        assert ran.code == 0, ran.err
    names = sorted(path.name for path in (tmp_path / "wavs").iterdir())
    assert names == sorted([wav_file_name("tr/ack 1"), wav_file_name("tr/ack 2")])
    assert all("/" not in name and " " not in name for name in names)


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
async def test_url_is_printed_when_the_download_fails(
    vidgo_fake: FakeVidgo, tmp_path: Path, as_json: bool
) -> None:
    """A paid-for WAV URL reaches stdout even when its download then fails: exit 1, one line."""
    vidgo_fake.inject(Fault.http_error(404), route="files", times=100)
    args = ["wav", "m", "a1", "--download", "track.wav", *(["--json"] if as_json else [])]
    ran = await run_cli(*args, env=api_env(vidgo_fake))
    assert ran.code == 1
    assert one_line(ran.err) and "download failed" in ran.err
    url = json.loads(ran.out)["wav_url"] if as_json else ran.out.strip()
    assert url.endswith(".wav") and url in ran.err  # the line says how to fetch it later
    assert vidgo_fake.accept_count["a1"] == 1


async def test_json_names_the_conversion_task_for_status(vidgo_fake: FakeVidgo) -> None:
    """`wav --json` names the conversion task, which `status` takes (it printed only
    the URL and the path, and the task id appeared nowhere)."""
    ran = await run_cli("wav", "m", "a1", "--json", "--no-journal", env=api_env(vidgo_fake))
    assert ran.code == 0, ran.err
    answer = json.loads(ran.out)
    status = await run_cli("status", answer["conversion_task_id"], env=api_env(vidgo_fake))
    assert status.code == 0, status.err
    assert answer["wav_url"] in status.out


async def test_a_repeat_prints_the_known_url_from_the_journal(vidgo_fake: FakeVidgo) -> None:
    """The same `wav` twice: the second prints the same URL from the journal, no second submit."""
    first = await run_cli("wav", "m", "a1", env=api_env(vidgo_fake))
    second = await run_cli("wav", "m", "a1", env=api_env(vidgo_fake))
    assert (first.code, second.code) == (0, 0), second.err
    assert first.out == second.out and first.out.strip().endswith(".wav")
    assert vidgo_fake.request_count("submit") == 1
    assert Path("vidgo-journal.sqlite").is_file()


async def test_already_converted_says_how_to_get_the_url(vidgo_fake: FakeVidgo) -> None:
    """Without a journal entry, a 409 ends in one line naming `vidgo-async status`."""
    first = await run_cli("wav", "m", "a1", "--no-journal", env=api_env(vidgo_fake))
    again = await run_cli("wav", "m", "a1", "--no-journal", env=api_env(vidgo_fake))
    assert first.code == 0
    assert again.code == 1 and one_line(again.err)
    assert "AlreadyConvertedError" in again.err and "vidgo-async status" in again.err
    assert "convert_many" not in again.err and "(--" not in again.err  # no Python, no mangling
    assert not Path("vidgo-journal.sqlite").exists()


async def test_missing_key_names_the_flag() -> None:
    """No API key: one line naming --api-key and VIDGO_API_KEY, never `api_key=...`."""
    ran = await run_cli("wav", "m", "a1", env={"VIDGO_BASE_URL": "http://127.0.0.1:9"})
    assert ran.code == 2 and one_line(ran.err)
    assert "--api-key" in ran.err and "VIDGO_API_KEY" in ran.err and "api_key=" not in ran.err


async def test_refused_key_is_an_account_refusal(vidgo_fake: FakeVidgo) -> None:
    """A 401 exits 3 with one line saying to check the key."""
    env = api_env(vidgo_fake, VIDGO_API_KEY="wrong-key")
    ran = await run_cli("wav", "m", "a1", env=env)
    assert ran.code == 3 and one_line(ran.err)
    assert "AuthenticationError" in ran.err and "--api-key" in ran.err


async def test_version_comes_from_the_package_metadata() -> None:
    """`--version` prints the installed distribution's version."""
    from importlib.metadata import version

    ran = await run_cli("--version")
    assert ran.code == 0
    assert ran.out.strip() == f"vidgo-async {version('vidgo-async')}"


@pytest.mark.parametrize("where", ["before", "after"])
async def test_vv_logs_the_sdk_at_debug_on_stderr(vidgo_fake: FakeVidgo, where: str) -> None:
    """`-vv` (before or after the command) shows the SDK's DEBUG records on stderr."""
    args = ["wav", "m", "a1"]
    args = ["-vv", *args] if where == "before" else [*args, "-vv"]
    ran = await run_cli(*args, env=api_env(vidgo_fake))
    assert ran.code == 0, ran.err
    assert re.search(r" DEBUG vidgo_async[\w.]*: submitted ", ran.err), ran.err
    assert "DEBUG" not in (await run_cli("wav", "m", "a2", env=api_env(vidgo_fake))).err


async def test_help_lists_environment_and_exit_codes() -> None:
    """--help names the VIDGO_* variables, the default journal and every exit status."""
    ran = await run_cli("--help")
    assert ran.code == 0
    for needle in ("VIDGO_API_KEY", "VIDGO_BASE_URL", "vidgo-journal.sqlite", "--no-journal"):
        assert needle in ran.out
    statuses = [line.split()[0] for line in ran.out.splitlines() if line[:5].strip().isdigit()]
    assert statuses == ["0", "1", "2", "3", "130"]
