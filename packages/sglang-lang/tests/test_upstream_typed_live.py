"""SGLang's typed-generation test programs (decode_int, decode_json, regex, dtype gen; upstream's
test_programs.py style) against our server with the embedded SmolLM2-135M: constrained by the
grammar backend on the native API, generated-then-validated on the OpenAI backend (our /v1
completions). Types and shapes are checked, not the model's knowledge."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from live_runtime import NEEDS_SERVER, default_runtime

pytestmark = NEEDS_SERVER

import sglang as sgl  # noqa: E402
from sglang.lang.ir import REGEX_FLOAT, REGEX_INT, REGEX_STR  # noqa: E402


@pytest.fixture(scope="module")
def runtime() -> Iterator[Any]:
    with default_runtime() as rt:
        yield rt


def test_decode_int_json_regex_and_dtypes(runtime: Any) -> None:
    @sgl.function
    def decode_int(s):
        s += "The number of hours in a day is " + sgl.gen_int("hours") + "\n"
        s += "The number of days in a year is " + sgl.gen_int("days") + "\n"

    ret = decode_int.run(temperature=0.1)
    assert isinstance(ret["hours"], int) and isinstance(ret["days"], int)

    @sgl.function
    def decode_json(s):
        s += "Generate a JSON object to describe the basic city information of Paris.\n"
        with s.var_scope("json_output"):
            s += "{\n"
            s += '  "name": ' + sgl.gen(regex=REGEX_STR) + ",\n"
            s += '  "population": ' + sgl.gen(regex=REGEX_INT, stop=[" ", "\n"]) + ",\n"
            s += '  "latitude": ' + sgl.gen(regex=REGEX_FLOAT, stop=[" ", "\n"]) + ",\n"
            s += '  "country": ' + sgl.gen_string() + ",\n"
            s += '  "area": ' + sgl.gen(dtype=int) + "\n"
            s += "}"

    obj = json.loads(decode_json.run(temperature=0.0, max_new_tokens=16)["json_output"])
    assert isinstance(obj["name"], str) and isinstance(obj["population"], int)
    assert isinstance(obj["country"], str) and isinstance(obj["area"], int)

    @sgl.function
    def dtype_gen(s):
        s += "Q: What is the full name of DNS?\n"
        s += "A: The full nams is " + sgl.gen("str_res", dtype=str, stop="\n") + "\n"
        s += "Q: Which year was DNS invented?\nA: " + sgl.gen("int_res", dtype=int) + "\n"
        s += "Q: What is the value of pi?\nA: " + sgl.gen("float_res", dtype=float) + "\n"
        s += "Q: Is the sky blue?\nA: " + sgl.gen("bool_res", dtype=bool) + "\n"

    state = dtype_gen.run(max_new_tokens=16)
    assert state["str_res"].startswith('"') and state["str_res"].endswith('"')
    assert isinstance(state["int_res"], int) and isinstance(state["float_res"], float)
    assert isinstance(state["bool_res"], bool)

    regex = r"((25[0-5]|2[0-4]\d|[01]?\d\d?).){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)"

    @sgl.function
    def regex_gen(s):
        s += "Q: What is the IP address of the Google DNS servers?\n"
        s += "A: " + sgl.gen("answer", temperature=0, regex=regex)

    assert re.fullmatch(regex, regex_gen.run()["answer"])


def test_typed_gens_on_the_openai_backend(runtime: Any) -> None:
    pytest.importorskip("openai")
    openai_completion = sgl.OpenAI(runtime.get_model_name(), base_url=runtime.url + "/v1",
                                   api_key="x", is_chat_model=False)

    @sgl.function
    def decode_json(s):
        s += "Generate a JSON object to describe the basic city information of Paris.\n"
        with s.var_scope("json_output"):
            s += "{\n"
            s += '  "name": ' + sgl.gen_string() + ",\n"
            s += '  "population": ' + sgl.gen_int() + "\n"
            s += "}"

    ret = decode_json.run(max_new_tokens=16, temperature=0, backend=openai_completion)
    print("\nOpenAI typed:", ret.error() or ret["json_output"])
    obj = json.loads(ret["json_output"])
    assert isinstance(obj["name"], str) and isinstance(obj["population"], int)

    @sgl.function
    def decode_int(s):
        s += "The number of hours in a day is " + sgl.gen_int("hours") + "\n"
        s += "The number of days in a year is " + sgl.gen_int("days") + "\n"

    ret = decode_int.run(temperature=0, backend=openai_completion)
    print("OpenAI decode_int:", ret.error() or ret.text())
    assert isinstance(ret["hours"], int) and isinstance(ret["days"], int)
    assert ret.text().startswith(f"The number of hours in a day is {ret['hours']}\n")
