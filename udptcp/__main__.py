"""``python -m udptcp``: see :mod:`udptcp.cli`."""

from __future__ import annotations

import sys

from udptcp.cli import main

if __name__ == "__main__":
    sys.exit(main())
