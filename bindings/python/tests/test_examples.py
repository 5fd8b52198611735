"""The scripts in examples/python run end to end against a real server."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "python"


def run(script: str, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, f"{script} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_examples(server):
    stream = "ex-" + uuid.uuid4().hex[:8]
    out = run("create_stream.py", server.addr, stream)
    assert f"created stream {stream!r}" in out and "partition 2" in out
    out = run("publish.py", server.addr, stream)
    assert out.count("stored at") == 5
    out = run("subscribe.py", server.addr, stream)
    assert "read 5 messages" in out
    bulk = stream + "-bulk"
    out = run("publish_async.py", server.addr, bulk, "2000")
    assert "2000 messages acked" in out and "last offset 1999" in out
