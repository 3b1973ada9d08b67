"""Model families and the architecture registry."""
