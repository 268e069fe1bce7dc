"""An example chat application over udptcp (or plain TCP, for comparison).

Run from the repository root::

    python -m examples.chat server --port 9000
    python -m examples.chat client --port 9000 --nick alice

``protocol.py`` documents the line protocol; ``hub.py`` holds the rules (nicknames, rooms)
without I/O; ``server.py`` and ``client.py`` put them on the network; ``net.py`` picks the
transport. It is an example, not part of the ``udptcp`` package.
"""
