"""Load tests (Locust) and the benchmark harness (`python -m load_testing.bench`)."""
