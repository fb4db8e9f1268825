"""``python -m hypersearch`` is the ``hypersearch`` command."""

from __future__ import annotations

import sys

from hypersearch.cli import main

if __name__ == "__main__":
    sys.exit(main())
