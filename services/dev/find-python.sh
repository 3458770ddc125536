#!/usr/bin/env bash
# Print the Python that the project's venv is built with: a Python 3.12 if this machine has one
# (on PATH, or installed by pyenv but not selected), else `python3`.
#
# Duet runs on Python 3.11 and later; 3.12 can start a task in its creator's turn of the event
# loop (eager start), which Duet's answers and aiohttp's request writer use on the way to every
# engine request (docs/benchmarks/relay.md).
set -uo pipefail

candidates=(python3.12)
if command -v pyenv >/dev/null 2>&1; then
  candidates+=("$(pyenv root)"/versions/3.12*/bin/python3.12)
fi
for candidate in "${candidates[@]}"; do
  # A pyenv shim exists for every installed version and fails unless that version is selected.
  if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
    "$candidate" -c 'import sys; print(sys.executable)'
    exit 0
  fi
done
echo python3
