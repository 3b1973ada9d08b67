"""The runtime side of multimodal requests, torch-free: media loading, placeholder ids, typed
items and the input-processor interface. Models and encoders live in plug-ins."""
