#!/usr/bin/env bash
# test.sh: set up, build (plain and ASan+UBSan), and run every test; ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3 # Debian's python, which sees python3-pytest

bash scripts/setup.sh || exit 1

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
fail_build=0

build() { # dir, extra meson args...
  local dir=$1; shift
  if [[ ! -f $dir/build.ninja ]]; then
    meson setup "$dir" "$@" >"$results/setup-$(basename "$dir").log" 2>&1 || {
      cat "$results/setup-$(basename "$dir").log"; return 1; }
  fi
  ninja -C "$dir" >"$results/ninja-$(basename "$dir").log" 2>&1 || {
    tail -50 "$results/ninja-$(basename "$dir").log"; return 1; }
}

echo "== build (debugoptimized)"
build build || fail_build=1
echo "== build (ASan + UBSan)"
build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dguests=false || fail_build=1
if [[ -n ${TANDEM_FUZZ_SECONDS:-} ]] || [[ ${CI:-} == true ]]; then
  echo "== build (libFuzzer)"
  CC=clang build build-fuzz -Dfuzz=true -Dtests=disabled -Dguests=false || fail_build=1
fi

echo "== format (clang-format --dry-run)"
fmt_files=$(git ls-files 'src/*.c' 'src/*.h' 'tests/unit/*.c' 'tests/unit/*.h' 'fuzz/*.c' \
  'guests/*.c' 'guests/*.h' 2>/dev/null)
if [[ -n $fmt_files ]] && ! clang-format --dry-run --Werror $fmt_files >"$results/format.txt" 2>&1; then
  head -20 "$results/format.txt"
  echo "format: FAILED" >>"$results/format.txt"
fi

export TANDEM_ROOT=$ROOT
run_unit() { # name, build dir
  local name=$1 dir=$2
  echo "== unit tests ($name)"
  meson test -C "$dir" --print-errorlogs --num-processes 2 >"$results/unit-$name.txt" 2>&1
  tail -12 "$results/unit-$name.txt"
  cp "$dir/meson-logs/testlog.json" "$results/unit-$name.json" 2>/dev/null
}

run_int() { # name, build dir, engine (kvm or emu), pytest marks
  local name=$1 dir=$2 engine=$3 marks=$4
  echo "== integration tests ($name: guests on $engine)"
  TANDEM_ACCEL=$engine TANDEM_BUILD=$ROOT/$dir TANDEM_GUESTS=$ROOT/build/guests \
    $PY -m pytest -q -p no:cacheprovider --junitxml="$results/int-$name.xml" \
    -m "$marks" tests/integration
}

# Guests boot on tandem's emulator everywhere; where /dev/kvm opens, the whole suite also runs
# on KVM.
engines=(emu)
if [[ -r /dev/kvm && -w /dev/kvm ]]; then
  engines=(kvm emu)
fi
echo "== engines for guest-booting tests: ${engines[*]}"

if ((fail_build == 0)); then
  run_unit plain build
  for e in "${engines[@]}"; do
    run_int "plain-$e" build "$e" "${TANDEM_TEST_MARKS:-not nothing}"
  done
  # Under the sanitizers everything runs but the long randomized sweeps (marked slow).
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  run_unit asan build-asan
  run_int "asan-${engines[0]}" build-asan "${engines[0]}" "not slow"
  unset ASAN_OPTIONS UBSAN_OPTIONS
  if [[ -d build-fuzz ]]; then
    echo "== fuzz (bounded)"
    bash scripts/fuzz.sh "${TANDEM_FUZZ_SECONDS:-60}" >"$results/fuzz.txt" 2>&1
    echo "fuzz exit $?" >>"$results/fuzz.txt"
    tail -3 "$results/fuzz.txt"
  fi
fi

$PY scripts/summarize.py "$results" "$fail_build"
