"""The trading CLI's local input handling: times, terms, reason codes, and the errors that
say what to give instead (no node needed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mdtp.node.cli import main
from mdtp.node.cli.options import UsageError
from mdtp.node.cli.trading import parse_time
from mdtp.node.identity.keys import SigningKey, save_key
from mdtp.node.ledger.trading.reasons import REASON_CODES


def test_times_are_read_as_now_relative_iso_or_milliseconds() -> None:
    before = int(time.time() * 1000)
    assert before <= parse_time("now") <= int(time.time() * 1000)
    in_30d = parse_time("+30d")
    assert abs(in_30d - before - 30 * 86_400_000) < 60_000
    assert parse_time("2030-01-31") == 1_896_048_000_000
    assert parse_time("2030-01-31T01:00:00+01:00") == 1_896_048_000_000
    assert parse_time("1896048000000") == 1_896_048_000_000
    with pytest.raises(UsageError, match=r"\+30d"):
        parse_time("next tuesday")


def test_reasons_lists_every_reason_code_with_its_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["reasons", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["code"] for r in rows] == list(REASON_CODES)
    assert all(r["description"] for r in rows)
    assert main(["reasons"]) == 0
    assert "superseded_version" in capsys.readouterr().out


def test_a_command_without_a_node_says_how_to_name_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("MDTP_NODE", "MDTP_CA", "MDTP_CLUSTER", "MDTP_MEMBER"):
        monkeypatch.delenv(var, raising=False)
    assert main(["dataset", "show", "ds1"]) == 2
    err = capsys.readouterr().err
    assert "--node HOST:PORT --ca ca.pem" in err and "--cluster DIR" in err


def test_an_offer_missing_terms_names_the_flags_to_give(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "k.json"
    save_key(key_file, SigningKey.generate(with_encryption=True))
    monkeypatch.setenv("MDTP_NODE", "127.0.0.1:9")
    monkeypatch.setenv("MDTP_CA", str(key_file))
    code = main(
        ["contract", "offer", "--key", str(key_file), "--id", "c1", "--dataset", "ds1",
         "--consumer", "did:key:z6Mkx", "--purpose", "training"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "missing terms: --end, --max-downloads" in err and "--terms FILE.json" in err
