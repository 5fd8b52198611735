"""The `.pyi` stubs: mypy (strict) accepts the examples and rejects wrong types."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "python"


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir=/dev/null", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


pytestmark = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import mypy"], capture_output=True).returncode != 0,
    reason="mypy not installed",
)


def test_examples_type_check():
    r = mypy(str(EXAMPLES))
    assert r.returncode == 0, r.stdout + r.stderr


def test_wrong_types_are_flagged(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        textwrap.dedent(
            """
            import liftbridge

            async def main() -> None:
                client = await liftbridge.Client.connect(["127.0.0.1:9292"])
                await client.publish("s", "text")
                await client.publish("s", b"v", ack_policy="all")
                async for m in client.subscribe("s", start=liftbridge.StartPosition.EARLIEST):
                    x: str = m.value
                ack = await (await client.send("s", b"v"))
                y: str = ack.offset
            """
        )
    )
    r = mypy(str(bad))
    assert r.returncode == 1
    out = r.stdout
    assert 'Argument 2 to "publish" of "Client" has incompatible type "str"' in out, out
    assert '"ack_policy"' in out, out
    assert 'Incompatible types in assignment (expression has type "bytes", variable has type "str")' in out, out
    assert 'Incompatible types in assignment (expression has type "int", variable has type "str")' in out, out
