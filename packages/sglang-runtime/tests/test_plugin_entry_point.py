"""A plug-in distribution found only through its entry point: the test writes an installed
distribution's metadata (dist-info with entry_points.txt) and its module into a folder on
sys.path (this process; multiprocessing's spawn hands sys.path on) and PYTHONPATH (any other
child process). The registry lists and loads it in-process, and an Engine with tp_size=2 on CPU
uses it in its rank processes, which run no registration code: they find it through
importlib.metadata."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sglang.runtime import plugins

sys.path.insert(0, str(Path(__file__).parent))
from plugin_dist import write_dist_info  # noqa: E402
from tiny_models import save_tiny_model  # noqa: E402

MODULE = "sglang_testplugin"
POLICY = "test-fcfs"
LOG_ENV = "SGLANG_TESTPLUGIN_LOG"
GREEDY = {"temperature": 0, "max_new_tokens": 6, "ignore_eos": True}

PLUGIN_SOURCE = f'''
"""A schedule policy plug-in: arrival order, logging the pid of every process that calls it."""
import os

from sglang.runtime.scheduler.policy import fcfs


def logged_fcfs(waiting, cache):
    path = os.environ.get("{LOG_ENV}")
    if path:
        with open(path, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
    return fcfs(waiting, cache)
'''


def write_plugin_dist(folder: Path) -> None:
    write_dist_info(folder, MODULE, {"sglang.schedule_policies": {POLICY: f"{MODULE}:logged_fcfs"}})
    (folder / f"{MODULE}.py").write_text(PLUGIN_SOURCE)


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The plug-in's folder, importable here and in every process started from here; the log
    file its policy appends to is `<folder>/calls.log`."""
    folder = tmp_path / "site"
    write_plugin_dist(folder)
    monkeypatch.syspath_prepend(str(folder))
    pythonpath = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), pythonpath])))
    monkeypatch.setenv(LOG_ENV, str(folder / "calls.log"))
    plugins.SCHEDULE_POLICIES.refresh()
    yield folder
    plugins.SCHEDULE_POLICIES.unregister(POLICY)
    sys.modules.pop(MODULE, None)
    monkeypatch.undo()  # sys.path first, so that the refresh below forgets the plug-in
    plugins.SCHEDULE_POLICIES.refresh()


def logged_pids(folder: Path) -> list[int]:
    log = folder / "calls.log"
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def test_the_registry_lists_and_loads_it_in_process(plugin_dist: Path) -> None:
    from sglang.runtime.config import RuntimeArgs
    from sglang.runtime.scheduler.policy import get_policy

    assert POLICY in plugins.SCHEDULE_POLICIES.names()
    assert MODULE not in sys.modules  # listed, not loaded
    assert RuntimeArgs(schedule_policy=POLICY).schedule_policy == POLICY
    policy = get_policy(POLICY)
    assert policy.__module__ == MODULE
    assert policy([], None) == [] and logged_pids(plugin_dist) == [os.getpid()]


def test_refresh_forgets_it_once_its_folder_leaves_sys_path(tmp_path: Path) -> None:
    write_plugin_dist(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        plugins.SCHEDULE_POLICIES.refresh()
        assert POLICY in plugins.SCHEDULE_POLICIES.names()
    finally:
        sys.path.remove(str(tmp_path))
        plugins.SCHEDULE_POLICIES.refresh()
    assert POLICY not in plugins.SCHEDULE_POLICIES.names()
    with pytest.raises(plugins.UnknownPluginError, match="fcfs, lpm"):
        plugins.SCHEDULE_POLICIES.get(POLICY)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> str:
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    return save_tiny_model(config, tmp_path_factory.mktemp("tiny_llama_plugin"))


def test_tp_rank_processes_use_the_plugin(plugin_dist: Path, tiny_llama: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import sglang as sgl

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two ranks on a small machine
    prompts = [[1, 2, 3, 4], [9] * 12, list(range(30, 50))]
    common = {"model_path": tiny_llama, "device": "cpu", "dtype": "float32",
              "max_total_tokens": 2048, "context_length": 128}
    with sgl.Engine(**common, schedule_policy="fcfs") as eng:
        expected = [o["output_ids"] for o in eng.generate(input_ids=prompts,
                                                          sampling_params=GREEDY)]
    assert logged_pids(plugin_dist) == []  # fcfs is not the plug-in
    with sgl.Engine(**common, schedule_policy=POLICY, tp_size=2) as eng:
        got = [o["output_ids"] for o in eng.generate(input_ids=prompts, sampling_params=GREEDY)]
    assert got == expected
    assert all(len(ids) == GREEDY["max_new_tokens"] for ids in got)
    pids = set(logged_pids(plugin_dist))
    # Both ranks schedule (each admits the same requests), each in its own process.
    assert len(pids) == 2 and os.getpid() not in pids
    assert MODULE not in sys.modules  # this process never needed it
