"""Live routers over SSH: inventory, probe, flash, push, status, doctor."""
