"""KV memory: slot pool, slot allocator, request table and the radix prefix cache."""

from sglang.runtime.cache.allocator import SlotAllocator
from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.cache.radix_cache import InsertResult, MatchResult, RadixCache, RadixNode
from sglang.runtime.cache.req_to_token import ReqToTokenPool

__all__ = [
    "InsertResult",
    "KVPool",
    "MatchResult",
    "RadixCache",
    "RadixNode",
    "ReqToTokenPool",
    "SlotAllocator",
]
