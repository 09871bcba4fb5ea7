"""Tests for the provider SDK, the synthetic population and the reference adapters."""
