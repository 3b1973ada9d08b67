"""Attention backends over the token-level KV pool."""
