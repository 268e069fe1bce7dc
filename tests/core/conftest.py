"""Fixtures for scripted core exchanges: one Connection driven segment by segment (see
:mod:`support.script`), with the plain RFC 9293 configuration."""

from __future__ import annotations

import pytest
from support.script import Script, scripted_config

from udptcp.core.config import Config


@pytest.fixture
def config() -> Config:
    """Plain RFC 9293 behaviour: no delayed ACKs, keepalive, window scaling, timestamps or
    SACK, so segments carry exactly the fields a test writes down."""
    return scripted_config()


@pytest.fixture
def script(config: Config) -> Script:
    """A :class:`~support.script.Script` on ``config``, the clock at 0."""
    return Script(config)
