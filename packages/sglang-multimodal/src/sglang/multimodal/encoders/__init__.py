"""Vision encoders (towers) of the multimodal models."""
