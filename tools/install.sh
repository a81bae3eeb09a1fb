#!/usr/bin/env bash
# Create .venv in the repo with the pinned stack; a no-op when it is already complete.
# fairseq 0.12.2 does not import on Python 3.11, so we build fairseq-fixed 0.12.3.1 against the
# installed torch (--no-build-isolation) and install its runtime needs by name (no torchaudio).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
FAIRSEQ_SPEC=${FAIRSEQ_SPEC:-fairseq-fixed==0.12.3.1}
stamp="$VENV/.lskd-install-stamp"
want=$( (cat requirements.txt tools/install.sh setup.py; echo "$FAIRSEQ_SPEC") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import fairseq, timm, lskd_plugins" 2>/dev/null; then
  echo "install: $VENV is complete (nothing to do)"
  exit 0
fi
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "install: need Python >= 3.10 (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
echo "install: pinned requirements into $VENV"
"${pip[@]}" install -q --upgrade pip 'setuptools<81' wheel
"${pip[@]}" install -q -r requirements.txt
if ! "$VENV/bin/python" -c "import fairseq" 2>/dev/null; then
  echo "install: building $FAIRSEQ_SPEC against torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') (about 2 minutes)"
  "${pip[@]}" install -q --no-deps --no-build-isolation "$FAIRSEQ_SPEC"
fi
"${pip[@]}" install -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c "import fairseq, timm, sacrebleu, lskd_plugins; print('install: ok, fairseq', fairseq.__version__, 'timm', timm.__version__)"
echo "$want" > "$stamp"
