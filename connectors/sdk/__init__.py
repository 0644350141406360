"""connectors.sdk."""
