"""connectors.iso20022."""
