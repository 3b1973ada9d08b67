"""Text, gen, select, dtype, sampling arguments, backends and the small public helpers."""

from __future__ import annotations

import json

import pytest
from fake_backend import FakeBackend

import sglang as sgl
from sglang.lang import ir
from sglang.lang.program import get_default_backend


@pytest.fixture(autouse=True)
def _reset_default_backend():
    yield
    sgl.set_default_backend(None)


def test_regex_constants_match_sglang() -> None:
    assert ir.REGEX_INT == r"[-+]?[0-9]+[ \n]*"
    assert ir.REGEX_FLOAT == r"[-+]?[0-9]*\.?[0-9]+[ \n]*"
    assert ir.REGEX_BOOL == r"(True|False)"
    assert ir.REGEX_STR == r"\"[\w\d\s]*\""


def test_text_gen_and_select() -> None:
    be = FakeBackend(["Paris\nmore"], select_scores={"yes": -0.1, "no": -2.0})

    @sgl.function
    def qa(s, question):
        s += "Q: " + question + "\nA:"
        s += sgl.gen("answer", max_tokens=16, stop="\n")
        s += "\nSure? " + sgl.select("sure", choices=["yes", "no"])

    state = qa.run(question="Capital of France?", backend=be)
    assert state["answer"] == "Paris"
    assert state["sure"] == "yes"
    assert state.text() == "Q: Capital of France?\nA:Paris\nSure? yes"
    assert state.get_meta_info("sure")["normalized_logprobs"] == [-0.1, -2.0]
    assert state.get_meta_info("answer")["finish_reason"] == "stop"
    kind, ctx, choices = be.calls[1]
    assert kind == "select" and choices == ["yes", "no"]
    assert ctx.text == "Q: Capital of France?\nA:Paris\nSure? "
    assert state.error() is None


def test_gen_with_choices_is_select() -> None:
    be = FakeBackend(select_scores={"b": 0.0})

    @sgl.function
    def pick(s):
        s += sgl.gen("c", choices=["a", "b"])

    state = pick.run(backend=be)
    assert state["c"] == "b"
    assert be.count("select") == 1 and be.count("generate") == 0
    assert isinstance(sgl.gen("x", choices=["a"]), ir.SglSelect)


def test_sampling_arguments_merge_run_defaults_with_gen() -> None:
    be = FakeBackend(["x", "y"])

    @sgl.function
    def two(s):
        s += sgl.gen("a", max_tokens=5, temperature=0.2, top_k=3, regex="[a-z]")
        s += sgl.gen("b", stop=["\n"], json_schema={"type": "string"}, ignore_eos=True)

    state = two.run(backend=be, temperature=0.7, top_p=0.9, min_p=0.1, frequency_penalty=0.5,
                    presence_penalty=0.25, stop="END")  # fmt: skip
    state.sync()
    pa, pb = be.calls[0][2], be.calls[1][2]
    assert (pa.max_new_tokens, pa.temperature, pa.top_p, pa.top_k, pa.regex) == (
        5,
        0.2,
        0.9,
        3,
        "[a-z]",
    )
    assert (pa.min_p, pa.frequency_penalty, pa.presence_penalty, pa.stop) == (0.1, 0.5, 0.25, "END")
    assert (pb.max_new_tokens, pb.temperature, pb.stop, pb.ignore_eos) == (128, 0.7, ["\n"], True)
    assert json.loads(pb.json_schema) == {"type": "string"}
    assert pb.to_sampling_params()["json_schema"] == pb.json_schema


@pytest.mark.parametrize(
    ("dtype", "answer", "value", "regex"),
    [
        (int, " 42 \n", 42, ir.REGEX_INT),
        ("int", "-7", -7, ir.REGEX_INT),
        (float, "3.5\n", 3.5, ir.REGEX_FLOAT),
        (bool, "True", True, ir.REGEX_BOOL),
        (bool, "False", False, ir.REGEX_BOOL),
        (str, '"hi there"', '"hi there"', ir.REGEX_STR),
    ],
)
def test_dtype_constrains_and_converts(dtype, answer, value, regex) -> None:
    be = FakeBackend([answer])

    @sgl.function
    def typed(s):
        s += "x = " + sgl.gen("x", dtype=dtype)

    state = typed.run(backend=be)
    got = state["x"]
    assert got == value and type(got) is type(value)
    assert be.calls[0][2].regex == regex
    assert state.text() == "x = " + answer  # the text keeps what the model wrote
    assert state.variables()["x"] == value


def test_gen_int_gen_string_and_bad_conversion() -> None:
    be = FakeBackend(["12", '"ok"', "twelve"])

    @sgl.function
    def prog(s):
        s += sgl.gen_int("n") + sgl.gen_string("s") + sgl.gen_int("bad")

    state = prog.run(backend=be)
    assert state["n"] == 12 and state["s"] == '"ok"'
    with pytest.raises(ValueError, match="'bad'.*not a valid int"):
        state["bad"]
    assert state.error() is None  # only the read of that variable fails
    with pytest.raises(ValueError, match="dtype"):
        sgl.gen("x", dtype=list)


def test_explicit_regex_wins_over_dtype() -> None:
    be = FakeBackend(["5"])

    @sgl.function
    def prog(s):
        s += sgl.gen("n", dtype=int, regex="[0-5]")

    prog.run(backend=be).sync()
    assert be.calls[0][2].regex == "[0-5]" and be.calls[0][2].dtype is int


def test_direct_call_bind_and_default_backend() -> None:
    be = FakeBackend({"say ": "hello"})

    @sgl.function
    def say(s, word, suffix="!"):
        s += word + " " + sgl.gen("out", max_tokens=5) + suffix
        return "done"

    with pytest.raises(ValueError, match="no backend"):
        say("say")
    sgl.set_default_backend(be)
    state = say("say")
    assert state.text() == "say hello!" and state.ret_value == "done"
    assert say.bind(suffix="?").run(word="say").text() == "say hello?"
    assert say.__name__ == "say"


def test_runtime_like_object_uses_its_endpoint() -> None:
    be = FakeBackend()

    class FakeRuntime:
        endpoint = be

    sgl.set_default_backend(FakeRuntime())
    assert get_default_backend() is be
    assert sgl.flush_cache() is True and be.flushes == 1
    assert sgl.get_server_args() == {"model_path": "fake-model"}
    other = FakeBackend()
    assert sgl.flush_cache(FakeRuntime()) and sgl.get_server_args(other)["model_path"]


def test_token_usage_is_counted_by_the_backend() -> None:
    be = FakeBackend(["abc"])

    @sgl.function
    def prog(s):
        s += "12345" + sgl.gen("a")

    prog.run(backend=be).sync()
    assert (be.token_usage.prompt_tokens, be.token_usage.completion_tokens) == (5, 3)


def test_images_and_videos_need_a_vision_backend() -> None:
    @sgl.function
    def look(s):
        s += sgl.image("cat.png") + "What is it? " + sgl.gen("a")

    @sgl.function
    def watch(s):
        s += sgl.video("clip.mp4", num_frames=4) + sgl.gen("a")

    state = look.run(backend=FakeBackend())
    assert isinstance(state.error(), ValueError)
    assert "does not support image" in str(state.error())
    with pytest.raises(ValueError, match="image"):
        state["a"]
    assert "video" in str(watch.run(backend=FakeBackend()).error())

    be = FakeBackend(["a cat"], supports_images=True)
    state = look.run(backend=be)
    assert state["a"] == "a cat"
    assert be.calls[0][1].media == [{"type": "image", "data": "cat.png"}]
    # The template's image token stands where the image was.
    assert be.calls[0][1].text == "<image>What is it? "
    be = FakeBackend(["a dog"])
    be.supports_videos = True
    assert watch.run(backend=be)["a"] == "a dog"
    assert be.calls[0][1].media == [
        {"type": "video", "data": "clip.mp4", "num_frames": 4}
    ]


def test_adding_unsupported_values_fails_clearly() -> None:
    @sgl.function
    def bad(s):
        s += 3

    with pytest.raises(TypeError, match="cannot add int"):
        bad.run(backend=FakeBackend())
    with pytest.raises(ValueError):
        sgl.select("x", choices=[])


def test_public_api_names() -> None:
    for name in ["function", "gen", "gen_int", "gen_string", "select", "image", "video", "system",
                 "user", "assistant", "system_begin", "system_end", "user_begin", "user_end",
                 "assistant_begin", "assistant_end", "set_default_backend", "flush_cache",
                 "get_server_args"]:  # fmt: skip
        assert callable(getattr(sgl, name)), name
    assert {"Runtime", "RuntimeEndpoint", "OpenAI", "Engine"} <= set(dir(sgl))
    with pytest.raises(AttributeError):
        sgl.not_a_thing  # noqa: B018
