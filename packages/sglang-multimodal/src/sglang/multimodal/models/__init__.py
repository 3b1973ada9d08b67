"""The LLaVA-family model classes, registered through the `sglang.models` entry points."""
