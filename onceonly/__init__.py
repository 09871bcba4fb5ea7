"""onceonly: an only-once certificate intermediation platform.

This package holds the contract's generated code (``onceonly.v1``) and the pieces
that the broker, the providers and the consumers share.
"""

__version__ = "0.1.0"
