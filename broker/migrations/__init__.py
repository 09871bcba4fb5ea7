"""The broker's schema migrations (alembic), applied at start by ``broker.storage.init_schema``."""
