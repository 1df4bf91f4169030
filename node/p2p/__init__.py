"""Mutual-TLS peer links: framing, the identity handshake, and the link manager."""
