"""The NAT traversal tests need the nat extra (aioice); without it the folder is skipped with
that reason. Loops and endpoint clean-up come from the root conftest (``one_loop`` marks the
slow tests: relays, timeouts, the kernel lab)."""

from __future__ import annotations

import pytest

pytest.importorskip("aioice", reason="NAT traversal needs the nat extra (aioice)")
