"""The web console: pages for provider agencies, consumer agencies and oversight bodies over the
broker's gRPC services (:mod:`.app`), served over HTTPS (:mod:`.server`), started by
``onceonly serve console`` (:mod:`.commands`)."""

DEFAULT_LISTEN = "127.0.0.1:8443"
"""Where ``onceonly serve console`` listens by default (``ONCEONLY_CONSOLE_LISTEN``)."""
