"""Every ``mdtp`` command the README shows exists, takes the options shown, and is run by a
test.

The commands are parsed out of the README as it is (code blocks, with ``\\`` continuations
and ``$(...)`` substitutions, and inline code spans such as the command tables), so new
sections are checked without editing this file:

- each command's subcommand path (``mdtp contract sign``) must be a command of the CLI's own
  parser (``mdtp.node.cli.build_parser``), and each ``--flag`` shown must be an option of
  that command: the README cannot mention what the CLI lacks;
- each subcommand path must be invoked by some test: the tests' source is read (with
  :mod:`ast`) for argument lists that start with the path's words (``main(["cluster",
  "init", ...])``, ``run_json(capsys, "tx", ...)``, ``[sys.executable, "-m", "mdtp.node",
  "demo"]``, ``"mdtp cluster up --dir ..."`` in a script), and the test fails naming every
  README command no test runs. :func:`test_covered_commands` prints the map from command
  to the tests that run it.
"""

from __future__ import annotations

import argparse
import ast
import functools
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mdtp.node.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TESTS = ROOT / "tests"

# ``mdtp`` (or a path ending in it) followed by its arguments, not ``mdtp.node`` or ``mdtp://``
COMMAND = re.compile(r"(?:^|(?<=[\s;&|(`]))(?:[\w./-]*/)?mdtp[ \t]+(?=[\w-])(?P<args>[^\n]*)")
INLINE = re.compile(r"(?<!`)`(?P<code>[^`\n]+)`(?!`)")
SHELL_FENCES = {"", "sh", "bash", "shell", "console"}


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]  # the subcommand path, e.g. ("contract", "sign")
    flags: tuple[str, ...]  # the options shown, e.g. ("--key", "--version")
    text: str  # as the README shows it


# ---- the README's commands -------------------------------------------------------------


def readme_code() -> Iterator[str]:
    """The README's shell code blocks (continuations joined) and its inline code spans."""
    text = README.read_text()
    in_block, fence = False, ""
    lines: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^\s*```(\w*)\s*$", line)
        if m and not in_block:
            in_block, fence, lines = True, m[1], []
        elif line.strip() == "```" and in_block:
            in_block = False
            if fence in SHELL_FENCES:
                yield from re.sub(r"\\\n\s*", " ", "\n".join(lines)).splitlines()
        elif in_block:
            lines.append(line)
        else:
            yield from (m["code"] for m in INLINE.finditer(line))


def substitutions(line: str) -> tuple[str, list[str]]:
    """``line`` with each ``$(...)`` replaced by a word, and the substituted commands."""
    inner: list[str] = []
    out, i = [], 0
    while i < len(line):
        if line.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(line) and depth:
                depth += {"(": 1, ")": -1}.get(line[j], 0)
                j += 1
            inner.append(line[i + 2 : j - 1])
            out.append("SUBST")
            i = j
        else:
            out.append(line[i])
            i += 1
    return "".join(out), inner


def command_texts(line: str) -> Iterator[str]:
    line, inner = substitutions(line)
    for sub in inner:
        yield from command_texts(sub)
    line = re.sub(r"(^|\s)#.*$", "", line)  # a shell comment
    for m in COMMAND.finditer(line):
        args = re.split(r"\s(?:&&|\|\||\||;|>|<)\s?|[;&]$", m["args"])[0]
        yield "mdtp " + args.strip()


def words_of(text: str) -> list[str]:
    """Shell words, with the README's placeholders read as words: ``[--json]``,
    ``--approve\\|--reject``, ``[ID \\| --key K]``, ``--field NAME=VALUE``."""
    text = text.replace("\\|", " ").replace("[", " ").replace("]", " ").replace("|", " ")
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote in prose
        return text.split()


@functools.cache
def cli_parser() -> argparse.ArgumentParser:
    return build_parser()


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def resolve(words: list[str]) -> tuple[tuple[str, ...], argparse.ArgumentParser]:
    """The longest subcommand path ``words`` start with, and its parser."""
    parser = cli_parser()
    path: list[str] = []
    for word in words:
        choices = subparsers(parser)
        if word not in choices:
            break
        parser, path = choices[word], [*path, word]
    return tuple(path), parser


@functools.cache
def readme_commands() -> list[Command]:
    found: dict[str, Command] = {}
    for line in readme_code():
        for text in command_texts(line):
            words = words_of(text)[1:]
            if not words:
                continue  # "the `mdtp` command" in prose
            path, _ = resolve(words)
            flags = tuple(w.split("=")[0] for w in words if re.match(r"^--?[a-zA-Z]", w))
            found.setdefault(text, Command(path, flags, text))
    return list(found.values())


# ---- the tests' invocations ------------------------------------------------------------


def string_runs(node: ast.AST) -> Iterator[list[str]]:
    """Runs of consecutive string constants in lists, tuples and calls' arguments (past
    ``"-m", "mdtp.node"`` or ``"mdtp"``), and the words of ``mdtp ...`` inside strings."""
    for item in ast.walk(node):
        if isinstance(item, ast.List | ast.Tuple):
            elements = item.elts
        elif isinstance(item, ast.Call):
            elements = item.args
        else:
            if isinstance(item, ast.Constant) and isinstance(item.value, str):
                for text in command_texts(item.value):
                    yield words_of(text)[1:]
            continue
        run: list[str] = []
        for e in [*elements, None]:
            if isinstance(e, ast.Constant) and isinstance(e.value, str):
                run.append(e.value)
                continue
            if run[:2] == ["-m", "mdtp.node"]:
                run = run[2:]
            elif run[:1] == ["mdtp"]:
                run = run[1:]
            if run:
                yield run
            run = []


def invoked_paths(run: list[str]) -> Iterator[tuple[str, ...]]:
    """The subcommand paths a run of strings invokes: the one it starts with, and a
    subcommand of a group anywhere in it (``cli_refused(m, "contract_signed", "contract",
    "delete", ...)``: the expected reason comes first)."""
    for start in range(len(run)):
        words, _ = resolve(run[start:])
        if words and (start == 0 or len(words) >= 2):
            yield words


@functools.cache
def invocations() -> dict[tuple[str, ...], set[str]]:
    """Subcommand path -> the test files whose source runs it."""
    seen: dict[tuple[str, ...], set[str]] = {}
    for path in sorted(TESTS.rglob("*.py")):
        if path.resolve() == Path(__file__).resolve():
            continue
        tree = ast.parse(path.read_text(), str(path))
        for run in string_runs(tree):
            for words in invoked_paths(run):
                seen.setdefault(words, set()).add(str(path.relative_to(ROOT)))
    return seen


# ---- the checks ------------------------------------------------------------------------


def test_the_readme_shows_commands() -> None:
    paths = {c.words for c in readme_commands()}
    # a sample of what any version of the README documents: the parser of this file works
    assert {("cluster", "up"), ("contract", "sign"), ("tx",), ("demo",)} <= paths, paths


@pytest.mark.parametrize("command", readme_commands(), ids=lambda c: c.text[:60])
def test_each_readme_command_and_flag_exists(command: Command) -> None:
    words = words_of(command.text)[1:]
    if not command.words:
        # only a top-level option may stand without a command (``mdtp --version``)
        assert words[0].startswith("-"), f"README shows an unknown command: {command.text}"
    path, parser = resolve(words)
    rest = words[len(path) :]
    # a group may be named alone ("`mdtp cluster` creates ..."), not with an unknown word
    assert not subparsers(parser) or not rest or rest[0].startswith("-"), (
        f"README shows a command the CLI lacks: {command.text}"
    )
    known = set(parser._option_string_actions)
    missing = [f for f in command.flags if f not in known]
    assert missing == [], f"{command.text}: the CLI has no {', '.join(missing)}"


def test_every_readme_command_is_run_by_a_test() -> None:
    covered = invocations()
    paths = sorted({c.words for c in readme_commands() if c.words})
    uncovered = [" ".join(p) for p in paths if p not in covered]
    assert uncovered == [], f"README commands that no test runs: {uncovered}"


def test_covered_commands() -> None:
    """The map of README commands to the tests that run them, those by real processes
    (``tests/cluster``, ``faults``, ``security``, ``deploy``) marked ``*`` (``pytest -s``
    prints it)."""
    covered = invocations()
    paths = sorted({c.words for c in readme_commands() if c.words})
    real = ("tests/cluster/", "tests/faults/", "tests/security/", "tests/deploy/")
    lines = []
    for p in paths:
        files = sorted(covered.get(p, set()))
        mark = "*" if any(f.startswith(real) for f in files) else " "
        lines.append(f"{mark} mdtp {' '.join(p)}: {', '.join(files) or '-'}")
    print("\n".join(lines))
    assert all(covered.get(p) for p in paths), "\n".join(lines)


def test_the_checks_notice_a_command_or_flag_the_cli_lacks() -> None:
    assert resolve(["contract", "frobnicate", "c-1"])[0] == ("contract",)
    assert resolve(["snapshot-nope", "export"])[0] == ()
    _, parser = resolve(["contract", "sign"])
    assert "--key" in parser._option_string_actions
    assert "--no-such-flag" not in parser._option_string_actions
    texts = list(command_texts("X=$(mdtp keys generate --out k.json) && mdtp tx ID # c"))
    assert texts == ["mdtp keys generate --out k.json", "mdtp tx ID"]
