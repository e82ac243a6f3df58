"""A two-task pipeline whose first task waits for a file: a run the tests can hold "working" and then release.

(No ``from __future__ import annotations`` here: KFP reads the components' annotations as real types.)
"""

from pathlib import Path

from kfp import compiler, dsl


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def wait_for(gate: str) -> str:
    import os
    import time

    for _ in range(3000):
        if os.path.exists(gate):
            return "opened"
        time.sleep(0.1)
    raise RuntimeError(f"{gate} never appeared")


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def after(word: str) -> str:
    return word + "!"


@dsl.pipeline(name="ui-gate")
def gate_pipeline(gate: str) -> str:
    first = wait_for(gate=gate)
    return after(word=first.output).output


def compile_gate(path: Path) -> Path:
    """The pipeline compiled to ``path``."""
    compiler.Compiler().compile(gate_pipeline, str(path))
    return path
