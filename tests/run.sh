#!/usr/bin/env bash
# Sets up a virtualenv in .venv (first run only) and runs lint, types and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if ! command -v openssl >/dev/null 2>&1; then
    echo "installing openssl (needed by the TLS interop tests)"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq openssl; else sudo apt-get update -qq && sudo apt-get install -y -qq openssl; fi
fi
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    # Debian's prometheus package: the deploy tests run a real Prometheus and promtool
    if [ "$(id -u)" = 0 ]; then
        echo "installing prometheus (needed by tests/deploy)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus
    elif [ "${CI:-}" = true ]; then
        echo "installing prometheus (needed by tests/deploy)"
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus
    else
        echo "prometheus/promtool missing and not root: the tests that need them will be skipped"
    fi
fi
if ! command -v chromium >/dev/null 2>&1; then
    # Debian's chromium: tests/explorer drives the explorer page in it, headless (Playwright
    # never downloads a browser of its own here)
    if [ "$(id -u)" = 0 ]; then
        echo "installing chromium (needed by tests/explorer)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    elif [ "${CI:-}" = true ]; then
        echo "installing chromium (needed by tests/explorer)"
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    else
        echo "chromium missing and not root: tests/explorer will be skipped"
    fi
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# mypy reads the packages under their installed names (mdtp.node, ...): see [tool.mypy]
mkdir -p .venv/typecheck/mdtp
for pkg in node consensus storage; do ln -sfn "../../../$pkg" ".venv/typecheck/mdtp/$pkg"; done
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/pytest "$@"
