"""Shared model building blocks: linear projections, norms, rotary embeddings, logits."""
