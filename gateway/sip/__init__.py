"""upcs gateway/sip."""
