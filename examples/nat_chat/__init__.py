"""Two peers behind NATs chatting over one udptcp peer connection (see README.md)."""
