"""Helpers of the benchmarks that measure each point in a fresh process (its own peak memory, no warm caches).

A benchmark script calls itself with ``--one JSON`` for each measurement: :func:`measure` starts that
process and reads back the JSON line it prints; :func:`serve` is the child's side.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys


def machine() -> str:
    """One line on where the figures come from."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"python {platform.python_version()}")


def measure(script: str, spec: dict, env: dict | None = None) -> dict:
    """Run ``script --one JSON(spec)`` in a fresh interpreter; its last stdout line, parsed.

    Raises :class:`RuntimeError` with the child's last stderr line when it fails.
    """
    done = subprocess.run([sys.executable, script, "--one", json.dumps(spec)], capture_output=True, text=True,
                          env=env)
    if done.returncode:
        raise RuntimeError(" ".join(done.stderr.strip().splitlines()[-1:]))
    return json.loads(done.stdout.strip().splitlines()[-1])


def serve(one_spec: str | None, one) -> bool:
    """In the child (``--one`` given): print ``one(**spec)`` as JSON and return True."""
    if not one_spec:
        return False
    print(json.dumps(one(**json.loads(one_spec))))
    return True
