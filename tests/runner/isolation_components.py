"""Hostile and careless components for the runner-isolation tests: real KFP components that plant symlinks in
their own task directory, report artifact URIs outside it, edit their inputs, or probe their container.

As in ``runner_components``: a factory (the image is known at test time), self-contained bodies, and no
``from __future__ import annotations`` (KFP reads the annotations as real types).
"""

import functools
from types import SimpleNamespace

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output


@functools.cache
def make_isolation_components(image: str) -> SimpleNamespace:
    """Every isolation test component, built for ``image``."""
    component = functools.partial(dsl.component, base_image=image, install_kfp_package=False)

    @component
    def plant_symlinks(victim: str, out: Output[Artifact]) -> str:
        """Swap the runner's files in this task's directory for links to host files, then fail (so the runner
        retries, appends to the log, resets the directory and reads the log's last line)."""
        import os
        import sys

        task_dir = os.path.dirname(out.path)
        secret = os.path.join(victim, "secret.txt")
        for name in ("log.txt", "executor_output.json"):
            path = os.path.join(task_dir, name)
            if os.path.lexists(path):
                os.remove(path)
            os.symlink(secret, path)
        parameters = os.path.join(task_dir, ".parameters")
        if os.path.isdir(parameters) and not os.path.islink(parameters):
            os.rmdir(parameters)
        os.symlink(os.path.join(victim, "private"), parameters)
        os.symlink(secret, out.path)
        sys.exit(3)

    @component
    def plant_output_links(victim: str, out: Output[Artifact]) -> str:
        """Succeed, but with the output parameter file and the output artifact as links to host files."""
        import os

        os.symlink(os.path.join(victim, "secret.txt"), out.path)
        return "done"

    @component
    def report_host_uri(victim: str, out: Output[Artifact]) -> str:
        """Report an artifact URI that points at a host file."""
        out.uri = victim + "/secret.txt"
        return "reported"

    @component
    def read_artifact(data: Input[Artifact]) -> str:
        with open(data.path) as handle:
            return handle.read()

    @component
    def write_dataset(text: str, out: Output[Dataset]):
        """A directory output with private modes, like ``tempfile.mkdtemp`` (0700) and ``mkstemp`` (0600) make."""
        import os

        os.makedirs(os.path.join(out.path, "inner"))
        path = os.path.join(out.path, "inner", "data.txt")
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, 0o600)
        os.chmod(os.path.join(out.path, "inner"), 0o700)
        os.chmod(out.path, 0o700)

    @component
    def read_dataset(data: Input[Dataset], suffix: str) -> str:
        import os

        with open(os.path.join(data.path, "inner", "data.txt")) as handle:
            return handle.read() + suffix

    @component
    def edit_input(data: Input[Dataset], suffix: str) -> str:
        """Careless: append to an input instead of writing an output."""
        import os

        path = os.path.join(data.path, "inner", "data.txt")
        try:
            with open(path, "a") as handle:
                handle.write("-EDITED")
            return "edited" + suffix
        except OSError as exc:
            return type(exc).__name__ + suffix

    @component
    def touch_run(out: Output[Artifact]) -> str:
        """Try to change the run's record and to add a file beside the task directories; report what happened."""
        import os

        run_dir = os.path.dirname(os.path.dirname(out.path))
        outcomes = []
        for name in ("run.json", "intruder.txt"):
            try:
                with open(os.path.join(run_dir, name), "a") as handle:
                    handle.write("tampered")
                outcomes.append("written")
            except OSError as exc:
                outcomes.append(type(exc).__name__)
        with open(out.path, "w") as handle:
            handle.write("own output")
        return ",".join(outcomes)

    @component
    def probe_container() -> str:
        """The container's privileges: effective capabilities, no_new_privs and the pids limit."""
        import json

        status = {}
        with open("/proc/self/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                status[key] = value.strip()
        pids = None
        for candidate in ("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"):
            try:
                with open(candidate) as handle:
                    pids = handle.read().strip()
                break
            except OSError:
                continue
        return json.dumps({"cap_eff": status.get("CapEff"), "no_new_privs": status.get("NoNewPrivs"), "pids": pids})

    return SimpleNamespace(**{name: value for name, value in locals().items() if not name.startswith("_")})
