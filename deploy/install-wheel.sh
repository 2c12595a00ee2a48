#!/bin/sh
# The one way refracture's wheel is installed: deploy/Dockerfile runs this script, and so does the newcomer-path test
# (tests/newcomer/test_newcomer_path.py checks that the Dockerfile's line is the one it runs), so what CI proves is
# what the image ships.
#
#   sh deploy/install-wheel.sh LOCK DIST [EXTRAS]
#
# installs the one refracture-*.whl in DIST, with the extras named in EXTRAS (comma-separated; none when empty), into
# the environment of the `python` found on PATH (a virtual environment's bin/ first on PATH).
#
# What gets installed is what the wheel's own metadata (Requires-Dist) asks for: LOCK (requirements.lock) only pins
# the versions and hashes of those packages, it adds none. So a dependency that pyproject.toml forgets to declare is
# missing here too, and the test that runs the processes from this install fails.
set -eu

lock=$1
dist=$2
extras=${3:-}

set -- "$dist"/refracture-*.whl
if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
    echo "install-wheel.sh: expected exactly one refracture-*.whl in $dist" >&2
    exit 2
fi
wheel=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

# pip itself first, at the lock's version and by its hashes: pips before about 24 do not apply the hashes of a
# constraints file to the packages they resolve (pypa/pip#9243), so the install below needs this one.
awk '/^pip==/ { p = 1; print; next } p && /^ +--hash=/ { print; next } { p = 0 }' "$lock" > "$work/pip.txt"
if ! grep -q '^pip==' "$work/pip.txt"; then
    echo "install-wheel.sh: $lock pins no pip (regenerate it: make lock)" >&2
    exit 2
fi
python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps --requirement "$work/pip.txt"

# Once any requirement has a hash pip wants one for every requirement, the wheel included: it gets its own.
digest=$(python -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$wheel")
printf '%s%s --hash=sha256:%s\n' "$wheel" "${extras:+[$extras]}" "$digest" > "$work/refracture.txt"
python -m pip install --quiet --disable-pip-version-check --constraint "$lock" --requirement "$work/refracture.txt"
python -m pip check
