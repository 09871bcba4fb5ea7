"""Alembic revisions, oldest first: ``NNNN_<what>.py``; never edit one that has shipped."""
