"""Small real KFP components for the runner's conformance tests, built for a given base image.

The components are created by a factory because the image is only known at test time (the Docker tests use
the locally built base image; the subprocess tests ignore it). Every function body is self-contained (imports
inside), as KFP's lightweight components require. No ``from __future__ import annotations`` here: KFP
reads the annotations as real types.
"""

import functools
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

from kfp import compiler, dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output, OutputPath, PipelineTaskFinalStatus


def compile_pipeline(pipeline, directory: Path) -> Path:
    """Compile a ``@dsl.pipeline`` function to ``<directory>/<name>.yaml`` with KFP's own compiler."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{pipeline.name}.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return path


@functools.cache
def make_components(image: str) -> SimpleNamespace:  # noqa: C901 - one flat list of components
    """Every test component, with ``image`` as its base image."""
    component = functools.partial(dsl.component, base_image=image, install_kfp_package=False)

    @component
    def echo(s: str) -> str:
        return s

    @component
    def add(a: int, b: int) -> int:
        return a + b

    @component
    def make_list(n: int) -> list:
        return [i * 10 for i in range(n)]

    @component
    def describe_types(s: str, i: int, f: float, b: bool, items: list, d: dict) -> str:
        import json

        values = [s, i, f, b, items, d]
        return json.dumps({"types": [type(v).__name__ for v in values], "values": values})

    @component
    def write_text(text: str, out: Output[Dataset]):
        with open(out.path, "w") as handle:
            handle.write(text)
        out.metadata["length"] = len(text)
        out.metadata["text"] = text

    @component
    def read_text(data: Input[Dataset]) -> str:
        import json

        with open(data.path) as handle:
            content = handle.read()
        return content + "|" + json.dumps(data.metadata, sort_keys=True)

    @component
    def join_texts(items: Input[list[Dataset]]) -> str:
        parts = []
        for item in items:
            with open(item.path) as handle:
                parts.append(handle.read())
        return ",".join(parts)

    @component
    def sum_list(xs: list) -> int:
        return sum(xs)

    @component
    def fail(code: int) -> str:
        import sys

        print(f"failing on purpose with exit code {code}", flush=True)
        sys.exit(code)

    @component
    def self_kill(heal: bool) -> str:
        import os
        import signal

        print("about to be killed" if not heal else "healed", flush=True)
        if not heal:
            os.kill(os.getpid(), signal.SIGKILL)
        return "healed"

    @component
    def count_attempts(counter: str, fail_times: int) -> int:
        import os

        count = 1
        if os.path.exists(counter):
            with open(counter) as handle:
                count += int(handle.read())
        with open(counter, "w") as handle:
            handle.write(str(count))
        if count <= fail_times:
            raise RuntimeError(f"attempt {count} fails on purpose")
        return count

    @component
    def sleep_stamp(seconds: float, tag: str) -> str:
        import json
        import time

        start = time.time()
        time.sleep(seconds)
        return json.dumps({"tag": tag, "start": start, "end": time.time()})

    @component
    def report_status(status: PipelineTaskFinalStatus, note: str) -> str:
        import json

        return json.dumps(
            {"state": status.state, "error": status.error_message, "task": status.pipeline_task_name, "note": note}
        )

    @component
    def read_file(data: Input[Artifact]) -> str:
        import json

        with open(data.path) as handle:
            return handle.read().strip() + "|" + json.dumps(data.metadata, sort_keys=True)

    @component
    def emit_named(word: str) -> NamedTuple("Named", [("word", str), ("number", int), ("model", Model)]):  # noqa: UP014
        import os
        from collections import namedtuple

        from kfp.dsl import Model

        model = Model(uri=dsl.get_uri("model"), metadata={"kind": "toy"})
        os.makedirs(os.path.dirname(model.path), exist_ok=True)
        with open(model.path, "w") as handle:
            handle.write(word.upper())
        result = namedtuple("Named", ["word", "number", "model"])
        return result(word=word, number=len(word), model=model)

    @component
    def cgroup_limits() -> str:
        import json
        from pathlib import Path

        def read(*candidates: str) -> str | None:
            for candidate in candidates:
                path = Path(candidate)
                if path.exists():
                    return path.read_text().strip()
            return None

        return json.dumps(
            {
                "memory": read("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"),
                "cpu": read("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
                "cpu_period": read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
            }
        )

    @component
    def whoami(out: Output[Dataset]) -> str:
        import os

        with open(out.path, "w") as handle:
            handle.write("written")
        return f"{os.getuid()}"

    @dsl.container_component
    def shell_concat(text: str, out: Output[Dataset], res: OutputPath(str), flag: str = None):  # noqa: RUF013
        return dsl.ContainerSpec(
            image=image,
            command=[
                "sh",
                "-ec",
                'mkdir -p "$(dirname "$3")"; printf "%s" "$1" > "$3"; printf "%s|%s" "$2" "$4" > "$0"',
            ],
            args=[
                res,
                dsl.ConcatPlaceholder(["<", text, ">"]),
                dsl.IfPresentPlaceholder(input_name="flag", then=[flag], else_=["no-flag"]),
                out.path,
                dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
            ],
        )

    return SimpleNamespace(**{name: value for name, value in locals().items() if hasattr(value, "component_spec")})
