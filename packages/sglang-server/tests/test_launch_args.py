"""launch_server's flags are generated from RuntimeArgs and ServerArgs: one flag per field with
its help text, default and choices (plug-in names from the registries when the parser is
built), values parsed by the field's type, and bad values rejected with exit status 2."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from sglang.runtime import plugins
from sglang.runtime.arg_fields import arg_fields
from sglang.runtime.config import DTYPES, LOAD_FORMATS, RuntimeArgs
from sglang.server.args import ServerArgs, build_parser, flag_of, parse_args, server_fields

SERVER_ONLY = {"host", "port", "chat_template", "api_key", "served_model_name",
               "graceful_shutdown_timeout", "log_requests", "max_request_bytes",
               "tool_call_parser", "reasoning_parser"}


def actions() -> dict[str, Any]:
    return {a.dest: a for a in build_parser()._actions if a.dest != "help"}


def test_help_lists_every_field_with_its_default() -> None:
    text = " ".join(build_parser().format_help().split())  # undo the line wrapping
    for f in (*arg_fields(RuntimeArgs), *server_fields()):
        assert flag_of(f) in text, f.name
        assert " ".join(f.description.split()) in text, f.name
    assert {f.name for f in server_fields()} == SERVER_ONLY
    by_dest = actions()
    assert set(by_dest) == {f.name for f in arg_fields(RuntimeArgs)} | SERVER_ONLY
    for dest, action in by_dest.items():
        assert "(default: " in action.help, dest
    assert "(default: lpm)" in text and "(default: 0.85)" in text
    assert "(default: the model's max_position_embeddings)" in text  # None, explained


def test_launch_server_help_in_a_real_process() -> None:
    out = subprocess.run([sys.executable, "-m", "sglang.launch_server", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for f in arg_fields(RuntimeArgs):
        assert flag_of(f) in out.stdout, f.name
    for name in plugins.SCHEDULE_POLICIES.names():
        assert name in out.stdout


def test_choices_are_the_registry_names_and_the_tuples() -> None:
    by_dest = actions()
    assert tuple(by_dest["schedule_policy"].choices) == plugins.SCHEDULE_POLICIES.names()
    assert tuple(by_dest["grammar_backend"].choices) == plugins.GRAMMAR_BACKENDS.names()
    assert tuple(by_dest["attention_backend"].choices) == (
        "auto", *plugins.ATTENTION_BACKENDS.names())
    assert tuple(by_dest["dtype"].choices) == DTYPES
    assert tuple(by_dest["load_format"].choices) == LOAD_FORMATS


def test_a_plugin_registered_before_the_parser_is_built_is_a_choice() -> None:
    plugins.GRAMMAR_BACKENDS.register("test-grammar", object)
    try:
        assert "test-grammar" in actions()["grammar_backend"].choices
        assert parse_args(["--grammar-backend", "test-grammar"]).runtime.grammar_backend == (
            "test-grammar")
    finally:
        plugins.GRAMMAR_BACKENDS.unregister("test-grammar")
    assert "test-grammar" not in actions()["grammar_backend"].choices


def test_defaults_equal_the_structs() -> None:
    args = parse_args([])
    assert args.runtime == RuntimeArgs()
    assert args == ServerArgs(runtime=RuntimeArgs())
    assert args.runtime.log_level == "info"  # one default, RuntimeArgs'


def test_values_are_parsed_by_field_type() -> None:
    args = parse_args([
        "--tp", "2", "--mem-fraction-static", "0.5", "--max-total-tokens", "4096",
        "--dist-timeout", "7.5", "--disable-radix-cache", "--schedule-policy", "fcfs",
        "--attention-backend", "torch", "--model-path", "/m", "--port", "31000",
        "--stream-interval", "3", "--log-level", "debug",
    ])
    rt = args.runtime
    assert (rt.tp_size, rt.mem_fraction_static, rt.max_total_tokens) == (2, 0.5, 4096)
    assert rt.dist_timeout == 7.5 and rt.disable_radix_cache is True
    assert (rt.schedule_policy, rt.attention_backend, rt.model_path) == ("fcfs", "torch", "/m")
    assert (args.port, rt.stream_interval, rt.log_level) == (31000, 3, "debug")
    assert parse_args(["--tp-size", "3"]).runtime.tp_size == 3
    assert parse_args([]).runtime.disable_radix_cache is False


@pytest.mark.parametrize("argv, message", [
    (["--schedule-policy", "nope"], "invalid choice: 'nope'"),
    (["--attention-backend", "nope"], "invalid choice: 'nope'"),
    (["--dtype", "int3"], "invalid choice"),
    (["--tp", "two"], "invalid int value"),
    (["--tp", "0"], "tp_size"),
    (["--mem-fraction-static", "1.5"], "mem_fraction_static"),
    (["--stream-interval", "0"], "stream_interval"),
    (["--max-request-bytes", "0"], "max_request_bytes"),
    (["--nnodes", "2", "--tp", "2"], "dist_init_addr"),
])
def test_bad_values_exit_2_with_the_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_tool_call_parser_flag() -> None:
    assert parse_args(["--tool-call-parser", "hermes"]).tool_call_parser == "hermes"
    assert parse_args([]).tool_call_parser is None
    with pytest.raises(SystemExit):
        parse_args(["--tool-call-parser", "nope"])


def test_speculative_flags() -> None:
    args = parse_args(["--speculative-algorithm", "NGRAM", "--speculative-num-draft-tokens", "6",
                       "--speculative-ngram-max-match-window-size", "5"]).runtime
    assert args.speculative_algorithm == "ngram"
    assert (args.speculative_num_draft_tokens, args.speculative_ngram_max_match_window_size) == (
        6, 5)
    assert parse_args([]).runtime.speculative_algorithm is None
    for argv in (["--speculative-algorithm", "medusa"],
                 ["--speculative-ngram-min-match-window-size", "4",
                  "--speculative-ngram-max-match-window-size", "2"]):
        with pytest.raises(SystemExit) as info:
            parse_args(argv)
        assert info.value.code == 2
