"""The pipeline workspace (``dsl.PipelineConfig(workspace=...)``): one directory every task of a run shares.

On Kubeflow the workspace is a volume mounted at ``/kfp-workspace`` in every task, and
``dsl.WORKSPACE_PATH_PLACEHOLDER`` (``{{$.workspace_path}}``) resolves to that path. Locally it is
``<run-dir>/.workspace`` (a task key never starts with a dot, so it cannot collide with a task directory).
The placeholder resolves to that *host* path under both backends: the Docker backend mounts it read-write at the
same absolute path (it is one of the run's shared directories), so a path one task returns is valid unchanged in
the next task, in ``run.json`` and on the host. A constant that spells ``/kfp-workspace`` literally is mapped to
the same directory, as ``kfp.local`` does. The size in the spec is not enforced (local disk is the limit).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from kfp.pipeline_spec import pipeline_spec_pb2 as pb

from expforge.errors import ExpforgeError

WORKSPACE_DIR_NAME = ".workspace"
KFP_MOUNT_PATH = "/kfp-workspace"
ARTIFACTS_DIR = ".artifacts"


def prepare_workspace(config: pb.WorkspaceConfig | None, run_dir: Path) -> Path | None:
    """Create the run's workspace directory when the pipeline declares one; ``None`` otherwise."""
    if config is None:
        return None
    workspace = run_dir / WORKSPACE_DIR_NAME
    try:
        workspace.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise ExpforgeError(f"cannot create the pipeline workspace {workspace} ({exc.strerror or exc})") from exc
    return workspace


def map_mount_path(text: str, workspace: Path | None) -> str:
    """``/kfp-workspace/...`` in a constant, as the local workspace path (unchanged without a workspace)."""
    if workspace is None:
        return text
    if text == KFP_MOUNT_PATH or text.startswith(KFP_MOUNT_PATH + "/"):
        return str(workspace) + text[len(KFP_MOUNT_PATH) :]
    return text


def import_into_workspace(source: Path, workspace: Path, task_key: str) -> Path:
    """Copy an imported file or directory into ``<workspace>/.artifacts/<task>/<name>`` (an importer's
    ``download_to_workspace=True``); symlinks inside a directory are copied as links, never followed."""
    if source.is_symlink() or not (source.is_file() or source.is_dir()):
        raise ExpforgeError(f"download_to_workspace: {source} is not a regular file or directory")
    target = workspace / ARTIFACTS_DIR / task_key.replace("/", "__") / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)
    return target
