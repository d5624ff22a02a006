# Shared by the bench scripts: build distill in the chosen profile and set $bin.
# DISTILL_BENCH_PROFILE=dev benchmarks the test-profile binary (dependencies at
# opt-level 2) when no release build is at hand.
profile=${DISTILL_BENCH_PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --release -p distill-cli >&2
  bin=${CARGO_TARGET_DIR:-target}/release/distill
else
  cargo build -p distill-cli >&2
  bin=${CARGO_TARGET_DIR:-target}/debug/distill
fi
