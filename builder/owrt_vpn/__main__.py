"""`python -m owrt_vpn` entry point."""

from owrt_vpn.cli import main

main()
