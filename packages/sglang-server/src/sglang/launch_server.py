"""Launch the sglang HTTP server: ``python -m sglang.launch_server --model-path PATH ...``.

Placeholder: the HTTP server is not implemented yet. Use the offline engine meanwhile::

    import sglang as sgl
    llm = sgl.Engine()
    print(llm.generate("Hello", {"max_new_tokens": 16})["text"])
"""

from __future__ import annotations

import sys
from typing import NoReturn

NOT_IMPLEMENTED_MESSAGE = (
    "sglang.launch_server: the HTTP server is not implemented yet. "
    "Use the offline engine instead: `import sglang as sgl; llm = sgl.Engine()`."
)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of ``python -m sglang.launch_server`` and the ``sglang-server`` script."""
    del argv  # arguments are ignored until the server exists
    print(NOT_IMPLEMENTED_MESSAGE, file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
