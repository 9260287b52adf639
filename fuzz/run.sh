#!/usr/bin/env bash
# Hostile-input fuzzing of Postern's parsers with cargo-fuzz (libFuzzer).
#
#   bash fuzz/run.sh [SECONDS]     (default 20 seconds per target)
#
# Installs the nightly toolchain and cargo-fuzz when they are missing, replays
# every input under fuzz/regressions/<target>/ (each once crashed a target),
# then fuzzes each target in turn for SECONDS, starting from the hand-written
# seeds in fuzz/seeds/<target>/ plus whatever corpus earlier runs left behind.
# Exits non-zero on any crash, hang, leak or out-of-memory.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-20}"
TARGETS=(smtp_command data_decoder address smtp_reply dns_reply domain_name config queue_record maildir_names uidlist imap_command)

say() { echo "fuzz: $*"; }

if ! command -v rustup >/dev/null; then
    say "rustup is needed to install the nightly toolchain" >&2
    exit 1
fi
# libFuzzer itself is C++, built by libfuzzer-sys.
if ! command -v c++ >/dev/null; then
    say "installing g++"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
# cargo-fuzz passes -Z flags, so it wants nightly. Where no nightly can be had,
# the installed toolchain takes them too once told RUSTC_BOOTSTRAP=1.
TOOLCHAIN=nightly
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    say "installing the nightly toolchain"
    if ! timeout 120 rustup toolchain install nightly --profile minimal --no-self-update; then
        TOOLCHAIN=$(rustup show active-toolchain | cut -d' ' -f1)
        say "no nightly toolchain to be had; using $TOOLCHAIN with RUSTC_BOOTSTRAP=1"
        export RUSTC_BOOTSTRAP=1
    fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install --locked -q cargo-fuzz@0.13.2
fi
fuzz() { cargo "+$TOOLCHAIN" fuzz "$1" -O --debug-assertions "${@:2}"; }

# One optimised build, with debug assertions and overflow checks, of every
# target; the runs below reuse it.
say "building the targets with $TOOLCHAIN"
fuzz build

# libFuzzer options for every run: an input that takes 10 s or 2 GiB fails.
COMMON=(-rss_limit_mb=2048 -timeout=10 -print_final_stats=1)

for target in "${TARGETS[@]}"; do
    dir="fuzz/regressions/$target"
    if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
        say "$target: replaying $(ls "$dir" | wc -l) regression inputs"
        # Given files rather than a directory, libFuzzer runs each once and stops.
        fuzz run "$target" "$dir"/* -- "${COMMON[@]}"
    fi
done

for target in "${TARGETS[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    cp -n "fuzz/seeds/$target"/* "$corpus"/ 2>/dev/null || true
    dict=()
    if [ -f "fuzz/dicts/$target.dict" ]; then
        dict=(-dict="fuzz/dicts/$target.dict")
    fi
    say "$target: fuzzing for $SECONDS_PER_TARGET s"
    # One process (no -jobs), so that a crash is reported here and not in a log file.
    fuzz run "$target" "$corpus" -- "${COMMON[@]}" "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET"
done
say "all targets ran without a crash"
