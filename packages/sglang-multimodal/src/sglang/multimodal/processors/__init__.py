"""Input processors of the LLaVA family (torch-free: they run in the tokenizer process): image
preprocessing (`image`, `image_config`), video decoding and frame sampling (`video`), prompt
markers (`markers`) and the processor with its per-architecture factories (`llava`)."""
