"""Checkpoint tensor names of every LLaVA layout -> our module tree.

Our tree: `model.*` (the Llama decoder), `lm_head.*`, `vision_tower.vision_model.*`,
`multi_modal_projector.*`, `image_newline.weight`, `vision_resampler.*`. The layouts users have:

- transformers >= 4.52 / 5.x save: `model.language_model.*`, `model.vision_tower.*`,
  `model.multi_modal_projector.*`, `model.image_newline`, `lm_head.*`;
- older transformers (and 5.x's legacy save): `language_model.model.*`, `language_model.lm_head.*`,
  `vision_tower.*`, `multi_modal_projector.*`, `image_newline`;
- the original LLaVA repo: `model.layers.*`, `model.embed_tokens.*`, `model.norm.*`, `lm_head.*`,
  `model.mm_projector.N.*`, `model.image_newline`, and sometimes the tower under
  `model.vision_tower.vision_tower.*`; a separate CLIP folder is streamed with the prefix
  `vision_tower.` by the config adapter.
"""

from __future__ import annotations

import re

from sglang.multimodal.encoders.clip import clip_weight_name

# First match wins; order matters (the original layout's `model.layers` must stay as it is).
_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), repl)
    for pattern, repl in (
        (r"^(?:model\.)?language_model\.model\.", "model."),
        (r"^(?:model\.)?language_model\.lm_head\.", "lm_head."),
        (r"^model\.language_model\.", "model."),
        (r"^(?:model\.)?mm_projector\.", "multi_modal_projector."),
        (r"^(?:model\.)?image_newline$", "image_newline.weight"),
        (r"^(?:model\.)?(multi_modal_projector\.|vision_resampler\.)", r"\1"),
    )
)
_TOWER = re.compile(r"^(?:model\.)?vision_tower\.(?:vision_tower\.)?")


def llava_weight_name(name: str) -> str | None:
    """Our parameter name for a checkpoint tensor; None for tensors we do not use."""
    tower = _TOWER.match(name)
    if tower:
        inner = clip_weight_name(name[tower.end():])
        return None if inner is None else f"vision_tower.{inner}"
    for pattern, repl in _RENAMES:
        if pattern.match(name):
            return pattern.sub(repl, name, count=1)
    return name
