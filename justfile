# Human entry points. CI uses plain bash (.ci/run).

# Run the test suite (the same command CI runs).
test:
    cargo test --workspace

# Import + curate benchmark: it_service_tickets and a 1M-row perturbed copy.
bench-curate:
    bash bench/curate.sh

bench: bench-curate
