"""Every client command of ``mdtp`` names its node, key and output the same way: one set of
flags, the same environment variables, ``--json``, and ``--tag``/``--tags`` both accepted."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mdtp.node.cli import build_parser
from mdtp.node.cli.options import UsageError, node_address, tags_of
from mdtp.node.ops.cluster import MANIFEST

CLIENT_GROUPS = ("account", "dataset", "contract", "audit", "data")
CLIENT_FLAGS = {"--node", "--ca", "--cluster", "--member", "--json", "--key", "--passphrase-file"}
ENV = ("MDTP_NODE", "MDTP_CA", "MDTP_CLUSTER", "MDTP_MEMBER")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def client_commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    groups = _subparsers(build_parser())
    for group in CLIENT_GROUPS:
        for name, sp in _subparsers(groups[group]).items():
            if (group, name) != ("data", "bench"):  # starts its own cluster: no node to name
                yield f"{group} {name}", sp


def flags(sp: argparse.ArgumentParser) -> set[str]:
    return {o for a in sp._actions for o in a.option_strings}


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Path:
    """A cluster manifest of two nodes (nothing needs to run to resolve an address)."""
    nodes = [
        {"id": f"node{i}", "home": f"node{i}", "p2p": "-", "api": f"127.0.0.1:1{i}", "metrics": "-"}
        for i in range(2)
    ]
    (tmp_path / MANIFEST).write_text(json.dumps({"nodes": nodes}))
    return tmp_path


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_every_client_command_takes_the_same_node_key_and_output_flags() -> None:
    commands = dict(client_commands())
    assert {"data publish", "data fetch", "data overdue", "contract offer", "audit show"} <= set(
        commands
    )
    for name, sp in commands.items():
        assert flags(sp) >= CLIENT_FLAGS, (name, CLIENT_FLAGS - flags(sp))


def test_commands_that_publish_accept_tag_and_tags(no_env: None) -> None:
    for command in (["data", "publish", "f.bin"], ["dataset", "publish"]):
        args = parse(*command, "--id", "d", "--key", "k", "--tag", "a", "--tags", "b, c")
        assert tags_of(args) == ["a", "b", "c"]
    assert tags_of(parse("dataset", "update", "d", "--key", "k", "--tags", "x")) == ["x"]
    assert tags_of(parse("dataset", "update", "d", "--key", "k")) is None


def test_the_environment_names_the_node_for_every_client_command(
    monkeypatch: pytest.MonkeyPatch, no_env: None, cluster_dir: Path
) -> None:
    monkeypatch.setenv("MDTP_CLUSTER", str(cluster_dir))
    monkeypatch.setenv("MDTP_MEMBER", "node1")
    ca = cluster_dir / "ca" / "ca.pem"
    for argv in (
        ["data", "overdue"],
        ["contract", "show", "c1"],
        ["audit", "show", "contract", "c1"],
    ):
        assert node_address(parse(*argv)) == ("127.0.0.1:11", ca)
    monkeypatch.setenv("MDTP_NODE", "10.0.0.1:26601")
    monkeypatch.setenv("MDTP_CA", "ca.pem")
    for argv in (["data", "overdue"], ["dataset", "show", "d1"]):
        assert node_address(parse(*argv)) == ("10.0.0.1:26601", Path("ca.pem"))


def test_a_flag_beats_the_environment(
    monkeypatch: pytest.MonkeyPatch, no_env: None, cluster_dir: Path
) -> None:
    monkeypatch.setenv("MDTP_NODE", "10.0.0.1:26601")
    monkeypatch.setenv("MDTP_CA", "ca.pem")
    monkeypatch.setenv("MDTP_MEMBER", "node1")
    args = parse("data", "overdue", "--cluster", str(cluster_dir), "--member", "node0")
    assert node_address(args) == ("127.0.0.1:10", cluster_dir / "ca" / "ca.pem")
    args = parse("data", "overdue", "--node", "10.0.0.2:1", "--ca", "other.pem")
    assert node_address(args) == ("10.0.0.2:1", Path("other.pem"))


def test_a_node_named_wrongly_says_what_to_give(no_env: None, cluster_dir: Path) -> None:
    with pytest.raises(UsageError, match=r"--node HOST:PORT --ca ca.pem, or --cluster DIR"):
        node_address(parse("data", "overdue"))
    with pytest.raises(UsageError, match=r"--node needs --ca"):
        node_address(parse("contract", "show", "c1", "--node", "h:1"))
    with pytest.raises(UsageError, match=r"not both"):
        node_address(parse("data", "overdue", "--node", "h:1", "--cluster", str(cluster_dir)))
    with pytest.raises(UsageError, match=r"--member node7: not in the cluster \(node0, node1\)"):
        node_address(parse("data", "overdue", "--cluster", str(cluster_dir), "--member", "node7"))


def test_data_commands_without_a_node_exit_2_like_the_trading_commands(
    capsys: pytest.CaptureFixture[str], no_env: None
) -> None:
    from mdtp.node.cli import main

    for argv in (["data", "overdue"], ["dataset", "show", "ds1"]):
        assert main(argv) == 2
        assert "--cluster DIR" in capsys.readouterr().err
