"""Command-line arguments of `python -m sglang.launch_server`, parsed into `ServerArgs`.

The flags are generated: one `--field-name` per field of `RuntimeArgs` and of the server-only
`ServerArgs`, with the help text, default and choices each field declares (`arg_fields`), so a
new runtime knob is a launch_server flag with no edit here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Any

import msgspec

from sglang.protocol.reasoning import REASONING_FORMATS, reasoning_format
from sglang.runtime.arg_fields import ArgField, add_flag, arg_fields, doc
from sglang.runtime.arg_fields import flag_of as flag_of  # re-exported: callers spell flags
from sglang.runtime.config import FLAG_ALIASES, RuntimeArgs
from sglang.server.openai.tool_parsers import tool_parser_names

ALIASES = FLAG_ALIASES


class ServerArgs(msgspec.Struct, kw_only=True):
    """The server-only settings plus the runtime's (`runtime`), which go to the scheduler."""

    runtime: RuntimeArgs
    host: Annotated[str, doc("address to listen on")] = "127.0.0.1"
    port: Annotated[int, doc("port to listen on")] = 30000
    chat_template: Annotated[str | None, doc(
        "chat template: a built-in name or a .json/.jinja file", unset="the tokenizer's"
    )] = None
    tool_call_parser: Annotated[str | None, doc(
        "how tool calls are read from the model's output (chat requests with tools)",
        choices=tool_parser_names(),
        unset="inferred from the chat template, else the architecture, else json",
    )] = None
    reasoning_parser: Annotated[str | None, doc(
        "split reasoning models' thinking into reasoning_content and constrain only the answer "
        "with response_format / grammars", choices=tuple(sorted(REASONING_FORMATS)),
        unset="no reasoning parsing",
    )] = None
    api_key: Annotated[str | None, doc(
        "require 'Authorization: Bearer KEY' on every endpoint except /health"
    )] = None
    served_model_name: Annotated[str | None, doc(
        "model id reported by the API (/v1/models, responses' model)",
        unset="the model folder or file name, or the hub id",
    )] = None
    log_requests: Annotated[bool, doc(
        "log one line per finished request: id, finish reason, prompt and completion tokens, "
        "seconds (the HTTP access log stays off)"
    )] = False
    max_request_bytes: Annotated[int, doc(
        "largest request body accepted, in bytes; a larger one is refused with 413 before it is "
        "read whole"
    )] = 16 * 1024 * 1024
    graceful_shutdown_timeout: Annotated[float, doc(
        "seconds SIGTERM waits for running requests before the server stops anyway"
    )] = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"invalid port={self.port}: expected 0..65535")
        if self.max_request_bytes < 1:
            raise ValueError(f"invalid max_request_bytes={self.max_request_bytes}: expected >= 1")
        if self.tool_call_parser is not None and self.tool_call_parser not in tool_parser_names():
            raise ValueError(f"invalid tool_call_parser={self.tool_call_parser!r}: expected one "
                             f"of {', '.join(tool_parser_names())}")
        if self.reasoning_parser is not None:
            reasoning_format(self.reasoning_parser)  # ValueError naming the known ones
        if self.graceful_shutdown_timeout < 0:
            raise ValueError(f"invalid graceful_shutdown_timeout={self.graceful_shutdown_timeout}:"
                             " expected a number of seconds >= 0")

    def model_name(self, model_path: str) -> str:
        """The served model id: --served-model-name, else the last part of the model path
        (a folder or file name), else the hub id as given."""
        if self.served_model_name:
            return self.served_model_name
        path = Path(model_path).expanduser()
        return path.name if path.exists() else model_path

    def redacted(self) -> dict[str, Any]:
        """For /get_server_args: everything except the API key."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        if out.get("api_key") is not None:
            out["api_key"] = "<redacted>"
        return out


def runtime_fields() -> tuple[ArgField, ...]:
    return arg_fields(RuntimeArgs)


def server_fields() -> tuple[ArgField, ...]:
    return tuple(f for f in arg_fields(ServerArgs) if f.name != "runtime")


def _add_flag(group: Any, field: ArgField) -> None:
    add_flag(group, field, ALIASES.get(field.name, ()))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sglang.launch_server",
        description="Serve a model over HTTP: native /generate and the OpenAI-compatible API.",
    )
    clash = {f.name for f in runtime_fields()} & {f.name for f in server_fields()}
    if clash:
        raise TypeError(f"ServerArgs and RuntimeArgs both declare {sorted(clash)}")
    server = p.add_argument_group("server")
    for field in server_fields():
        _add_flag(server, field)
    runtime = p.add_argument_group("runtime (also keyword arguments of sglang.Engine)")
    for field in runtime_fields():
        _add_flag(runtime, field)
    return p


def parse_args(argv: list[str] | None = None) -> ServerArgs:
    """Parse the command line; exits with status 2 and a message on a bad argument."""
    parser = build_parser()
    ns = vars(parser.parse_args(argv))
    try:
        runtime = RuntimeArgs(**{f.name: ns[f.name] for f in runtime_fields()})
        return ServerArgs(runtime=runtime, **{f.name: ns[f.name] for f in server_fields()})
    except ValueError as e:
        parser.error(str(e))
