"""Wire-level types shared by the frontend, server and runtime (torch-free)."""

from sglang.protocol.media import MediaRef, media_per_prompt
from sglang.protocol.sampling_params import SAMPLING_EPS, SamplingParams

__all__ = ["SAMPLING_EPS", "MediaRef", "SamplingParams", "media_per_prompt"]
