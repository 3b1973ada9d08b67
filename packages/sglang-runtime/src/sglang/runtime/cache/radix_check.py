"""Debug-only helpers for RadixCache: a full invariant check and a text dump of the tree.

Kept apart from radix_cache.py because they recount everything from scratch (O(tree)), which the
hot path must never do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from sglang.runtime.cache.radix_cache import RadixCache, RadixNode


def iter_nodes(root: RadixNode) -> Iterator[RadixNode]:
    """Every node below ``root`` (root excluded), iteratively so deep trees cannot overflow."""
    stack = list(root.children.values())
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children.values())


def check_tree(cache: RadixCache) -> None:
    root = cache.root
    if cache.disabled:
        assert not root.children, "disabled radix cache holds nodes"
        assert cache.evictable_size == 0 and cache.locked_size == 0, "disabled cache has sizes"
        return
    assert root.parent is None and not root.key, "root must have no parent and an empty key"
    evictable = locked = 0
    leaves: set[RadixNode] = set()
    all_slots: list[torch.Tensor] = []
    for node in iter_nodes(root):
        parent = node.parent
        where = f"node {node!r} (key head {node.key[:4]})"
        assert parent is not None, f"{where} has no parent"
        assert not node.dead, f"{where} is marked dead but still in the tree"
        assert len(node.key) > 0, f"{where} has an empty edge"
        assert node.slots.dtype == torch.int64 and node.slots.dim() == 1, (
            f"{where} slots must be a 1-D int64 tensor, got {node.slots.dtype}/{node.slots.dim()}D"
        )
        assert node.slots.numel() == len(node.key), (
            f"{where}: {len(node.key)} tokens but {node.slots.numel()} slots"
        )
        assert parent.children.get(node.key[0]) is node, (
            f"{where} is not keyed by its first token {node.key[0]} in its parent"
        )
        for tok, child in node.children.items():
            assert child.key and child.key[0] == tok, f"{where}: child under {tok} starts otherwise"
            assert child.parent is node, f"{where}: child's parent pointer is wrong"
        assert node.lock_ref >= 0, f"{where} has negative lock_ref {node.lock_ref}"
        if parent is not root:
            assert parent.lock_ref >= node.lock_ref, (
                f"{where}: lock_ref {node.lock_ref} exceeds its parent's {parent.lock_ref}"
            )
        if node.lock_ref > 0:
            locked += len(node.key)
        else:
            evictable += len(node.key)
            if not node.children:
                leaves.add(node)
        all_slots.append(node.slots)
    assert evictable == cache.evictable_size, (
        f"evictable_size {cache.evictable_size} but recount gives {evictable}"
    )
    assert locked == cache.locked_size, (
        f"locked_size {cache.locked_size} but recount gives {locked}"
    )
    assert leaves == cache._candidates, (
        f"eviction candidates out of date: {len(cache._candidates)} tracked, {len(leaves)} real"
    )
    if not all_slots:
        return
    slots = torch.cat(all_slots)
    num_slots = cache.allocator.num_slots
    assert int(slots.min()) >= 0 and int(slots.max()) < num_slots, "tree slot out of range"
    uniq, counts = torch.unique(slots, return_counts=True)
    dup = uniq[counts > 1]
    assert dup.numel() == 0, f"slots {dup[:8].tolist()} appear more than once in the tree"
    in_free = slots[cache.allocator.is_free(slots)]
    assert in_free.numel() == 0, f"tree slots {in_free[:8].tolist()} are also in the free list"


def format_tree(root: RadixNode, max_tokens: int = 8) -> str:
    lines = ["<root>"]
    stack = [(child, 1) for child in reversed(list(root.children.values()))]
    while stack:
        node, depth = stack.pop()
        key = list(node.key[:max_tokens])
        more = "..." if len(node.key) > max_tokens else ""
        lines.append(
            f"{'  ' * depth}{key}{more} len={len(node.key)} lock={node.lock_ref} "
            f"t={node.last_access}"
        )
        stack.extend((c, depth + 1) for c in reversed(list(node.children.values())))
    return "\n".join(lines)
