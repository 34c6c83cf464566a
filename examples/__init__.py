"""Runnable examples; the test suite runs each of them."""
