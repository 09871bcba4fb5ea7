"""Tests of the client library, the CLI and the example caseworker application."""
