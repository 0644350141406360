"""connectors.sim."""
