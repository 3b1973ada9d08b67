"""The server is not implemented yet: launch_server must say so and exit 2, never pretend."""

import subprocess
import sys

import pytest

from sglang import launch_server


def test_main_exits_2_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        launch_server.main(["--model-path", "x"])
    assert exc.value.code == 2
    assert "the HTTP server is not implemented yet" in capsys.readouterr().err


def test_python_dash_m_launch_server() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sglang.launch_server", "--model-path", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "the HTTP server is not implemented yet" in proc.stderr
