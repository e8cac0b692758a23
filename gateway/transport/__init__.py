"""upcs gateway/transport."""
