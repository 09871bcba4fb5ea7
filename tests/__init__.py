"""Test suite for onceonly."""
