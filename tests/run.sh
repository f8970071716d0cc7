#!/usr/bin/env bash
# Set up and run the whole test suite: the fast suite and the real-tool tests on the default python3
# (mitmproxy 11), then the fast suite again on Python 3.12 where present (mitmproxy 12).
# Needs only Python >= 3.11, pip, Node/npm and git; installs everything else itself.
set -euo pipefail
cd "$(dirname "$0")/.."

setup() {  # setup PYTHON... VENV
  local venv=${*: -1}
  "${@:1:$#-1}" -m venv "$venv"
  "$venv/bin/python" -m pip install -q -e '.[test]'
}

setup python3 .venv
.venv/bin/python -m pytest -m "not realtool" -p no:cacheprovider
.venv/bin/python -m pytest -m realtool -p no:cacheprovider || [ $? -eq 5 ]  # 5: no real-tool test selected

if command -v python3.12 >/dev/null 2>&1; then
  setup python3.12 .venv312
elif command -v pyenv >/dev/null 2>&1 && pyenv versions --bare 2>/dev/null | grep -q '^3\.12'; then
  setup env "PYENV_VERSION=$(pyenv versions --bare | grep '^3\.12' | tail -n 1)" python3 .venv312
else
  echo "Python 3.12 not found: the mitmproxy 12 run is skipped"
  exit 0
fi
.venv312/bin/python -m pytest -m "not realtool" -p no:cacheprovider
