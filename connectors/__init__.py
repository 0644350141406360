"""Everything a participant runs or speaks: HTTP and stream connectors, SDK, adapters, sims."""
