"""Tests of the broker core."""
