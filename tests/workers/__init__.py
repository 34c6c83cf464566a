"""Tests of the worker runtime (`workers/`)."""
