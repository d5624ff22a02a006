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
