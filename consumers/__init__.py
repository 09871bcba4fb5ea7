"""Consumers: the client library, the ``onceonly`` CLI and an example caseworker application."""
