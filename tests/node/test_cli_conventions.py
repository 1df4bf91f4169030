"""``mdtp`` follows the conventions of the tools operators know: ``version``/``--version``,
``--json`` everywhere, quiet on a closed pipe, ``MDTP_HOME``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mdtp.node.app.health import register_process_metrics
from mdtp.node.cli import build_parser, main
from mdtp.node.cli.data import progress_bar
from mdtp.node.sdk.data import Progress


def test_version_comes_from_the_installed_package_metadata(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["version", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {
        "name": "mdtp",
        "version": metadata.version("mdtp"),
        "python": platform.python_version(),
    }
    assert main(["version"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"mdtp {metadata.version('mdtp')} (Python {platform.python_version()})"
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == line


def test_a_node_registry_carries_build_info_and_the_process_metrics() -> None:
    registry = CollectorRegistry()
    register_process_metrics(registry)
    text = generate_latest(registry).decode()
    version, python = metadata.version("mdtp"), platform.python_version()
    assert f'mdtp_build_info{{python="{python}",version="{version}"}} 1.0' in text
    assert "process_resident_memory_bytes " in text
    assert "python_info{" in text


@pytest.mark.parametrize("argv", [["reasons", "--json"], ["reasons"], ["version"]])
def test_a_closed_pipe_ends_the_command_quietly_like_a_unix_tool(argv: list[str]) -> None:
    """``mdtp ... | head -1``: no traceback, the status of a process killed by SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        r = subprocess.run(
            [sys.executable, "-m", "mdtp.node", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert r.stderr == ""
    assert r.returncode == 128 + signal.SIGPIPE


def all_commands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every leaf command of ``parser`` with its words (``cluster status``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                words = f"{prefix} {name}".strip()
                if any(isinstance(a, argparse._SubParsersAction) for a in sp._actions):
                    yield from all_commands(sp, words)
                else:
                    yield words, sp


def home_actions() -> dict[str, argparse.Action]:
    return {
        words: action
        for words, sp in all_commands(build_parser())
        for action in sp._actions
        if "--home" in action.option_strings
    }


def test_every_home_option_defaults_to_mdtp_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MDTP_HOME", raising=False)
    without = home_actions()
    assert {"init", "start", "status"} <= set(without)
    assert all(a.required and a.default is None for a in without.values())
    monkeypatch.setenv("MDTP_HOME", str(tmp_path))
    with_env = home_actions()
    assert set(with_env) == set(without)
    assert all(not a.required and a.default == str(tmp_path) for a in with_env.values())
    assert build_parser().parse_args(["status"]).home == str(tmp_path)
    assert build_parser().parse_args(["status", "--home", "elsewhere"]).home == "elsewhere"


# Commands that print nothing a script would read: a foreground daemon, a narrated demo and
# a shell script.
NO_JSON = {"start", "demo", "completion"}


def test_every_command_that_prints_takes_json() -> None:
    missing = [
        words
        for words, sp in all_commands(build_parser())
        if words not in NO_JSON and not any("--json" in a.option_strings for a in sp._actions)
    ]
    assert not missing, f"commands without --json: {missing}"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    assert main([*argv, "--json"]) == code
    return json.loads(capsys.readouterr().out)


def test_local_commands_print_one_json_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MDTP_KEY_PASSPHRASE", raising=False)
    ca = run_json(capsys, "ca", "init", "--dir", str(tmp_path / "ca"))
    assert Path(ca["ca"]).exists()
    home = tmp_path / "h"
    init = run_json(
        capsys, "init", "--home", str(home), "--id", "acme", "--ca-dir", str(tmp_path / "ca")
    )
    assert init["member"]["id"] == "acme" and Path(init["member_file"]).exists()
    out = tmp_path / "genesis.json"
    gen = run_json(
        capsys, "genesis", "build", "--chain-id", "c1", "--out", str(out), init["member_file"]
    )
    assert gen == {"chain_id": "c1", "members": 1, "out": str(out)}
    key = run_json(capsys, "keys", "generate", "--out", str(tmp_path / "k.json"))
    shown = run_json(capsys, "keys", "show", str(tmp_path / "k.json"))
    assert shown["account_id"] == key["account_id"]
    cl = run_json(capsys, "cluster", "init", "--dir", str(tmp_path / "c"), "--nodes", "1")
    assert [n["id"] for n in cl["nodes"]] == ["node0"]
    assert run_json(capsys, "cluster", "down", "--dir", str(tmp_path / "c")) == {"stopped": []}


def test_a_failure_with_json_prints_a_json_error_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = run_json(capsys, "status", "--home", str(tmp_path / "none"), code=2)
    assert doc["status"] == "failed" and doc["reason"] == "bad_config" and doc["message"]
    ca = run_json(capsys, "ca", "init", "--dir", str(tmp_path / "ca"))["ca"]
    doc = run_json(capsys, "data", "overdue", "--node", "127.0.0.1:1", "--ca", ca, code=2)
    assert doc["status"] == "failed" and doc["reason"] == "usage" and "--key" in doc["message"]


def test_progress_bars_only_on_a_terminal_and_with_an_eta(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bar = Progress("fetch c-1", 100 * 2**20)  # stderr is captured here: not a terminal
    bar.update(50 * 2**20)
    bar.finish()
    assert capsys.readouterr().err == ""
    assert "ETA 0:05" in bar.line(5.0)  # half of 100 MiB in 5 s: 5 s to go
    slow = Progress("x", 3700, enabled=True)
    slow.done = 1
    assert slow.line(1.0).endswith("ETA 1:01:39")
    forced = Progress("x", 10, enabled=True)
    forced.update(10)
    assert "100.0%" in capsys.readouterr().err
    for words in (["data", "fetch", "c-1", "--out", "o"], ["data", "publish", "f", "--id", "d"]):
        args = build_parser().parse_args([*words, "--key", "k"])
        assert progress_bar(args) is None  # the bar decides: a terminal or nothing
        assert (
            progress_bar(build_parser().parse_args([*words, "--key", "k", "--no-progress"]))
            is False
        )


def complete(script: Path, *words: str) -> list[str]:
    """What bash offers for the last of ``words`` with the generated completion loaded."""
    array = " ".join(shlex.quote(w) for w in ("mdtp", *words))
    r = subprocess.run(
        [
            "bash",
            "-c",
            f"source {shlex.quote(str(script))}; COMP_WORDS=({array}); "
            f'COMP_CWORD={len(words)}; _mdtp; printf "%s\\n" "${{COMPREPLY[@]}}"',
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return r.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_completion_offers_every_command_and_its_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "mdtp.bash"
    script.write_text(capsys.readouterr().out)
    assert complete(script, "clu") == ["cluster"]
    assert set(complete(script, "cluster", "")) >= {"init", "up", "status", "restart", "down"}
    assert set(complete(script, "cluster", "up", "--")) >= {"--dir", "--timeout", "--json"}
    assert "--json" in complete(script, "block", "--j")
    for words, _ in all_commands(build_parser()):
        *parent, last = words.split()
        assert last in complete(script, *parent, last[:2]), words
