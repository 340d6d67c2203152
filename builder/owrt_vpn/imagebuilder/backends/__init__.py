"""Where ``make image`` runs: on this host or in a container."""
