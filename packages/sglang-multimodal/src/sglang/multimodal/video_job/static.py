"""The static split: K nodes that never talk to each other, node r taking `manifest[r::K]`.

Every node builds the same sorted manifest, so the strided slices cover it exactly, remainders
included (the seed's `len // K` chunks lost the last `len % K` videos). K and r come from
`--num-nodes/--node-rank`, or else from torchrun's environment (`WORLD_SIZE`, `RANK`). Ranks are
not stable across torchrun restarts; nothing depends on them beyond which slice a node takes,
since records are keyed by video.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Split:
    rank: int
    world: int

    def __post_init__(self) -> None:
        if self.world < 1:
            raise ValueError(f"the number of nodes must be at least 1, got {self.world}")
        if not 0 <= self.rank < self.world:
            raise ValueError(f"node rank {self.rank} is outside 0..{self.world - 1}")

    @property
    def tag(self) -> str:
        """Names this node's records file (for people; nothing reads it back)."""
        return f"node{self.rank}of{self.world}"

    def take(self, manifest: Sequence[T]) -> list[T]:
        return list(manifest[self.rank :: self.world])


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


def resolve_split(
    num_nodes: int | None, node_rank: int | None, env: Mapping[str, str] | None = None
) -> Split:
    """The flags when given (both or neither), else torchrun's WORLD_SIZE / RANK, else one node."""
    if (num_nodes is None) != (node_rank is None):
        raise ValueError("give --num-nodes and --node-rank together")
    if num_nodes is not None and node_rank is not None:
        return Split(rank=node_rank, world=num_nodes)
    env = os.environ if env is None else env
    world, rank = _env_int(env, "WORLD_SIZE"), _env_int(env, "RANK")
    if world is None:
        return Split(rank=0, world=1)
    return Split(rank=rank or 0, world=world)
