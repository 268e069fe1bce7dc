"""Shared test support, importable from every test folder (the root ``conftest.py`` puts
``tests/`` on ``sys.path``):

* :mod:`support.segments` -- keyword segment builders (``seg(SYN | ACK, seq=y, ack=x + 1)``);
* :mod:`support.script` -- one core connection driven by hand on a virtual clock, with a
  builder per state (``script.in_state(S.FIN_WAIT_2)``);
* :mod:`support.ladder` -- checks an exchange written the way the seed notes draw it
  (``"A > B  SYN seq=x"``) against what two connections actually sent;
* :mod:`support.protocols` -- the asyncio protocols tests connect with (``Recorder``,
  ``Echo``);
* :mod:`support.certs` -- a throwaway CA and server certificate for the TLS tests.
"""
