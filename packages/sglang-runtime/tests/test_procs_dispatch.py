"""The scheduler process loop's message table: every message type a scheduler can receive has
exactly one handler, and each raw frame reaches the right one (no model, no sockets: a fake
scheduler and a push socket that records what was sent)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, get_args

import msgspec
import pytest

from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.messages import (
    AbortReq,
    CheckIntegrityReq,
    FlushCacheReq,
    FlushCacheResult,
    IntegrityResult,
    SchedulerInput,
    SchedulerOutput,
    SchedulerStats,
    StatsReq,
    TokenizedGenerateReq,
    TokenOutput,
    TokenOutputBatch,
)
from sglang.runtime.procs.scheduler_proc import SchedulerProcessLoop


class FakeScheduler:
    has_work = False

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.added: list[Any] = []
        self.aborted: list[str] = []

    def add_request(self, req: Any) -> None:
        if self.refuse:
            raise ValueError("prompt too long")
        self.added.append(req)

    def abort(self, rid: str) -> TokenOutput:
        self.aborted.append(rid)
        return TokenOutput(rid=rid, new_token_ids=[], finished=True)

    def flush_cache(self) -> bool:
        return True

    def stats(self) -> SchedulerStats:
        return SchedulerStats(
            num_running=0, num_waiting=0, kv_used_tokens=7, kv_total_tokens=64,
            cached_prompt_tokens=0, prompt_tokens=0, generated_tokens=0, forward_steps=0,
            decode_steps=0, decode_batch_tokens=0, num_retractions=0,
        )

    def check_integrity(self) -> None:
        pass


class RecordingPush:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.decoder = msgspec.msgpack.Decoder(SchedulerOutput)

    def send(self, data: Any, copy: bool = True) -> None:
        self.sent.append(self.decoder.decode(bytes(data)))


def make_loop(refuse: bool = False) -> tuple[SchedulerProcessLoop, FakeScheduler, RecordingPush]:
    sched, push = FakeScheduler(refuse), RecordingPush()
    loop = SchedulerProcessLoop(SimpleNamespace(scheduler=sched, device="cpu"), None, push, 0)
    return loop, sched, push


def frames(*msgs: Any) -> list[bytes]:
    enc = msgspec.msgpack.Encoder()
    return [enc.encode(m) for m in msgs]


def generate_req(rid: str) -> TokenizedGenerateReq:
    return TokenizedGenerateReq(rid=rid, input_ids=[1, 2, 3], sampling_params=SamplingParams())


def test_every_scheduler_input_type_has_one_handler() -> None:
    loop, _, _ = make_loop()
    assert set(loop.handlers) == set(get_args(SchedulerInput))


def test_each_message_reaches_its_handler_in_order() -> None:
    loop, sched, push = make_loop()
    loop.handle_frames(frames(
        generate_req("a"), StatsReq(), AbortReq(rid="a"), FlushCacheReq(), CheckIntegrityReq(),
    ))
    assert [r.rid for r in sched.added] == ["a"] and sched.aborted == ["a"]
    # Replies leave in request order; the request's echo (no prompt ids) precedes them.
    assert [type(m) for m in push.sent] == [
        TokenizedGenerateReq, SchedulerStats, FlushCacheResult, IntegrityResult,
    ]
    assert push.sent[0].input_ids == [] and push.sent[0].rid == "a"
    assert push.sent[1].kv_used_tokens == 7
    assert push.sent[3].ok
    loop.flush_outputs()
    batch = push.sent[-1]
    assert isinstance(batch, TokenOutputBatch)
    assert [o.rid for o in batch.outputs] == ["a"] and batch.outputs[0].finished


def test_a_refused_request_finishes_with_a_400() -> None:
    loop, sched, push = make_loop(refuse=True)
    loop.handle_frames(frames(generate_req("b")))
    loop.flush_outputs()
    out = push.sent[-1].outputs[0]
    assert out.rid == "b" and out.finished and out.error == "prompt too long"
    assert out.finish_reason.status_code == 400 and out.prompt_tokens == 3


def test_an_undecodable_frame_is_dropped_and_the_rest_handled() -> None:
    loop, _, push = make_loop()
    loop.handle_frames([b"\xc1not msgpack", *frames(StatsReq())])
    assert [type(m) for m in push.sent] == [SchedulerStats]


@pytest.mark.parametrize("msg", [FlushCacheResult(success=True), TokenOutputBatch(outputs=[])])
def test_a_scheduler_output_is_not_a_scheduler_input(msg: Any) -> None:
    loop, _, _ = make_loop()
    with pytest.raises(msgspec.ValidationError):
        loop.decoder.decode(frames(msg)[0])
