#!/usr/bin/env bash
# Create .venv (once) and install both packages with the test/benchmark extras.
# constraints.txt pins torch to the CPU wheel; elsewhere pyproject's range applies.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
