"""`vidgo-async wav`/`batch` with PostgreSQL: --shared-quota, --journal-lease (real server)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from pathlib import Path

import pytest
from cli_support import api_env, one_line, run_cli

from vidgo_async.testing import FakeVidgo

asyncpg = pytest.importorskip("asyncpg", reason="the postgres extra is not installed")

pytestmark = pytest.mark.asyncio


def _pairs(path: Path, prefix: str, count: int) -> Path:
    path.write_text("task_id,audio_id\n" + "".join(f"m,{prefix}-{i}\n" for i in range(count)))
    return path


async def _fetch(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


def _most_in_one_second(times: list[float]) -> int:
    times = sorted(times)
    return max(
        (sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times)), default=0
    )


async def test_two_batches_share_one_poll_cap_through_shared_quota(
    make_fake_for_cli: FakeVidgo, tmp_path: Path, postgres_dsn: str
) -> None:
    """Two `batch --shared-quota` processes stay together under --max-polls-per-second,
    in the namespace derived from the API key."""
    fake, cap = make_fake_for_cli, 10
    flags = ("--shared-quota", postgres_dsn, "--max-polls-per-second", str(cap), "--no-journal")
    prefix = uuid.uuid4().hex[:8]
    sources = [_pairs(tmp_path / f"{n}.csv", f"{prefix}{n}", 15) for n in ("a", "b")]
    ran = await asyncio.gather(
        *(run_cli("batch", str(s), *flags, env=api_env(fake)) for s in sources)
    )
    assert [r.code for r in ran] == [0, 0], [r.err for r in ran]
    assert fake.request_count("submit") == 30
    polls = [r.at for r in fake.requests_to("detail")]
    assert len(polls) >= 30
    assert _most_in_one_second(polls) <= cap
    digest = hashlib.sha256(b"vidgo-async quota namespace\x00" + fake.api_key.encode())
    rows = await _fetch(postgres_dsn, "SELECT DISTINCT namespace FROM vidgo_async_quota")
    assert f"key-{digest.hexdigest()[:16]}" in {r["namespace"] for r in rows}
    assert fake.api_key not in str(rows)


async def test_wav_with_a_shared_quota_and_a_named_namespace(
    vidgo_fake: FakeVidgo, postgres_dsn: str
) -> None:
    """`wav --shared-quota DSN --quota-namespace NAME` converts under that namespace."""
    namespace = f"cli-{uuid.uuid4().hex[:8]}"
    ran = await run_cli(
        "wav", "m", f"a-{namespace}", "--no-journal", "--shared-quota", postgres_dsn,
        "--quota-namespace", namespace, "--max-polls-per-second", "100",
        env=api_env(vidgo_fake),
    )  # fmt: skip
    assert ran.code == 0, ran.err
    assert ran.out.startswith("http")
    rows = await _fetch(
        postgres_dsn, "SELECT bucket FROM vidgo_async_quota WHERE namespace = $1", namespace
    )
    assert [r["bucket"] for r in rows] == ["polls"]


async def test_batch_journal_lease_sets_the_claims_lease(
    vidgo_fake: FakeVidgo, tmp_path: Path, postgres_dsn: str
) -> None:
    """`batch --journal DSN --journal-lease 3`: the workers' claims live 3 s, not 30."""
    prefix = uuid.uuid4().hex[:8]
    source = _pairs(tmp_path / "pairs.csv", prefix, 3)
    ran = await run_cli(
        "batch", str(source), "--journal", postgres_dsn, "--journal-lease", "3", "--json",
        "--max-polls-per-second", "500", env=api_env(vidgo_fake),
    )  # fmt: skip
    assert ran.code == 0, ran.err
    assert sorted(json.loads(line)["audio_id"] for line in ran.out.splitlines()) == [
        f"{prefix}-{i}" for i in range(3)
    ]
    rows = await _fetch(
        postgres_dsn,
        "SELECT extract(epoch FROM lease_until - clock_timestamp())::float8 AS left"
        " FROM vidgo_async_journal WHERE audio_id LIKE $1",
        prefix + "-%",
    )
    assert len(rows) == 3
    assert all(0 < r["left"] <= 3 for r in rows)  # settled pairs are kept one lease
    again = await run_cli(
        "batch", str(source), "--journal", postgres_dsn, "--journal-lease", "3", "--json",
        env=api_env(vidgo_fake),
    )  # fmt: skip
    # Within that lease a re-run reports none of them, and says why (it said "no pairs in
    # the input").
    assert again.code == 0 and again.out == "", again.err
    assert "3 pairs not reported here" in again.err and "no pairs in the input" not in again.err
    assert re.search(r"reported by another worker \(see above\)\s+3\b", again.err), again.err


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--journal-lease", "10"), "--journal-lease: only with a postgresql://"),
        (("--journal", "postgresql://db/x", "--journal-lease", "0.5"), "--journal-lease"),
        (("--journal-lease", "0"), "--journal-lease"),
        (("--shared-quota", "db.sqlite"), "--shared-quota"),
        (("--quota-namespace", "x"), "--quota-namespace: only with --shared-quota"),
        (("--shared-quota", "postgresql://db/x", "--quota-namespace", ""), "--quota-namespace"),
    ],
    ids=[
        "lease-without-dsn",
        "lease-too-short",
        "lease-zero",
        "quota-not-dsn",
        "namespace-alone",
        "namespace-empty",
    ],
)
async def test_bad_postgres_flags_are_usage_errors_before_any_request(
    vidgo_fake: FakeVidgo, tmp_path: Path, flags: tuple[str, ...], needle: str
) -> None:
    """A bad --journal-lease, --shared-quota or --quota-namespace: exit 2, one line."""
    source = _pairs(tmp_path / "pairs.csv", "bad", 1)
    ran = await run_cli("batch", str(source), *flags, env=api_env(vidgo_fake))
    assert ran.code == 2, ran.err
    assert needle in ran.err and one_line(ran.err)
    assert vidgo_fake.requests == []


async def test_an_unreachable_shared_quota_is_one_line_without_the_password(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """A quota database that cannot be reached: exit 2, one line, no password, no request."""
    source = _pairs(tmp_path / "pairs.csv", "down", 1)
    dsn = "postgresql://app:s3cret@127.0.0.1:1/none"
    ran = await run_cli("batch", str(source), "--shared-quota", dsn, env=api_env(vidgo_fake))
    assert ran.code == 2, ran.err
    assert "shared quota" in ran.err and one_line(ran.err)
    assert "s3cret" not in ran.err
    assert vidgo_fake.requests == []
