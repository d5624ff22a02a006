# Shared by the bench scripts: build distill (and the test servers) in the
# chosen profile and set $bin and $testkit. DISTILL_BENCH_PROFILE=dev
# benchmarks the test-profile binary (dependencies at opt-level 2) when no
# release build is at hand.
profile=${DISTILL_BENCH_PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --release -p distill-cli -p distill-testkit >&2
  bin=${CARGO_TARGET_DIR:-target}/release/distill
  testkit=${CARGO_TARGET_DIR:-target}/release/distill-testkit
else
  cargo build -p distill-cli -p distill-testkit >&2
  bin=${CARGO_TARGET_DIR:-target}/debug/distill
  testkit=${CARGO_TARGET_DIR:-target}/debug/distill-testkit
fi

# A trained banking77 bag run under $1 (trained once, then reused): sets $run.
banking77_run() {
  run=$(ls -d "$1"/exp/banking77-bag/*/ 2>/dev/null | head -1 || true)
  if [ -z "$run" ] || [ ! -f "$run/model/model.json" ]; then
    run=$("$bin" train configs/exp/banking77-bag.toml --experiments "$1/exp" 2>/dev/null | tail -1)
  fi
}
