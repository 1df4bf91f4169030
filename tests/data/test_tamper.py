"""The Byzantine supplier's chunk hook: only the testing entry point installs it, and it
corrupts exactly the chunks of the datasets its switch names."""

from __future__ import annotations

import pytest

from mdtp.node.app.hooks import NodeHooks
from mdtp.node.testing.hooks import hooks_from_env
from mdtp.node.testing.tamper import TAMPER_ENV, TamperedChunks, hook_from_env


def test_tampered_chunks_flip_one_byte_of_the_named_datasets_only() -> None:
    hook = TamperedChunks(frozenset({"byz"}))
    assert hook("byz", 0, b"\x00abc") == b"\xffabc"
    assert hook("honest", 0, b"\x00abc") == b"\x00abc"


def test_switch_names_datasets_separated_by_commas() -> None:
    hook = hook_from_env({TAMPER_ENV: "a,,b"})
    assert hook is not None and hook.datasets == {"a", "b"}
    assert hook_from_env({}) is None


def test_test_entry_point_installs_the_hook_and_a_node_runs_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert NodeHooks().chunk is None
    monkeypatch.delenv("MDTP_TEST_BYZANTINE", raising=False)
    monkeypatch.setenv(TAMPER_ENV, "byz")
    hooks = hooks_from_env()
    assert isinstance(hooks.chunk, TamperedChunks) and hooks.chunk.datasets == {"byz"}
