"""A step that raises fails its requests with an error (never a hang) and the engine keeps serving."""

from __future__ import annotations

import threading
from typing import Any


def test_failing_extend_answers_its_requests(engine: Any) -> None:
    def boom(*_: Any) -> Any:
        raise RuntimeError("injected sampling failure")

    original = engine._call(lambda s: s.out.sample)
    engine._call(lambda s: setattr(s.out, "sample", boom))
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            engine.generate(["one", "two"], {"temperature": 0, "max_new_tokens": 4})
        except Exception as e:  # noqa: BLE001 - the test inspects it below
            result["error"] = e

    try:
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "requests of a failed extend step were never answered"
    finally:
        engine._call(lambda s: setattr(s.out, "sample", original))
    assert "injected sampling failure" in str(result.get("error"))
    engine.check_integrity()
    out = engine.generate("The capital of France is", {"temperature": 0, "max_new_tokens": 3})
    assert out["meta_info"]["completion_tokens"] == 3
