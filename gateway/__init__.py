"""upcs gateway."""
