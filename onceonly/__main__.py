"""``python -m onceonly``: the same as the ``onceonly`` command."""

from onceonly.consumers.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
