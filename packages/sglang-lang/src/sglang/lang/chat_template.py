"""How chat roles render into text on the frontend side."""

from __future__ import annotations

from dataclasses import dataclass, field

from sglang.protocol.media import MEDIA_TOKENS

ROLES = ("system", "user", "assistant")


@dataclass
class ChatTemplate:
    """Each role's text goes between its prefix and suffix. `default_system_prompt` is inserted
    when a program's first role block is not a system one (None: no implicit system block)."""

    name: str
    role_prefix_and_suffix: dict[str, tuple[str, str]]
    default_system_prompt: str | None = None
    stop_str: list[str] = field(default_factory=list)
    # What sgl.image / sgl.video put into the text: the model's media tokens, which its input
    # processor replaces with the media's placeholders (LLaVA-family tokens by default).
    image_token: str = MEDIA_TOKENS["image"]
    video_token: str = MEDIA_TOKENS["video"]

    def prefix(self, role: str) -> str:
        return self.role_prefix_and_suffix[role][0]

    def suffix(self, role: str) -> str:
        return self.role_prefix_and_suffix[role][1]


# A plain template for backends that don't describe one: "ROLE: text\n".
PLAIN = ChatTemplate(
    name="plain",
    role_prefix_and_suffix={r: (f"{r.upper()}: ", "\n") for r in ROLES},
)
