"""sglang.multimodal: vision towers, LLaVA / Yi-VL / video models, image and video preprocessing.

Plugs into the runtime's model registry and the server's preprocessing hook. Not implemented yet.
"""

__version__ = "0.1.0"
