"""The benchmark harness: inferq against model_b in a plain FastAPI app, same machine, one run.

Run ``python -m load_testing.bench --help``; see load_testing/README.md.
"""
