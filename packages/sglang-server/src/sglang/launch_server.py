"""Launch the sglang HTTP server: ``python -m sglang.launch_server --model-path PATH ...``.

Without --model-path it serves the embedded SmolLM2-135M-Instruct. See ``--help`` for options.
"""

from __future__ import annotations

from typing import NoReturn


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of ``python -m sglang.launch_server`` and the ``sglang-server`` script."""
    from sglang.server.args import parse_args
    from sglang.server.launcher import launch_server

    server_args = parse_args(argv)
    raise SystemExit(launch_server(server_args))


if __name__ == "__main__":
    main()
