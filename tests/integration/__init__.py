"""Integration tests: real daemons in network namespaces (need root)."""
