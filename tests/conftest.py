"""Shared fixtures: small real datasets built once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Under pytest-xdist every worker gets one thread for numerical libraries: workers already fill the cores, and
# oversubscribed torch/BLAS threads make small models many times slower (set before torch is imported).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from docker_gate import docker_unavailable, require_images
from synthetic_digits import synthetic_items

from expforge.data.manifest import write_dataset
from expforge.standins.tls import process_cert
from expforge.standins.vertex import trust_certificate

# Session fixtures that start the Google Cloud stand-ins (Firestore, Cloud Storage, BigQuery, Vertex AI).
pytest_plugins = ["standins_fixtures"]

# gRPC loads its trust roots once per process, at the first secure channel: trust the certificate every
# Vertex stand-in of this worker serves before any test opens one.
trust_certificate(process_cert().cert_path)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-class dataset with train/val/test splits written through the real writer."""
    output = tmp_path_factory.mktemp("tiny") / "dataset"
    items = synthetic_items(6, "train", 1) + synthetic_items(3, "val", 2) + synthetic_items(3, "test", 3)
    write_dataset(output, items, info={"source": "test"})
    return output


REPO = Path(__file__).resolve().parents[1]
IMAGES_JSON = REPO / "build" / "images.json"


@pytest.fixture(scope="session")
def built_images() -> dict[str, str]:
    """``build/images.json`` (from ``make images``), with every image checked to exist in a reachable daemon."""
    try:
        images = json.loads(IMAGES_JSON.read_text())
    except (OSError, ValueError):
        docker_unavailable(f"{IMAGES_JSON} missing or unreadable: run `make images`")
    require_images(list(images.values()))
    return images
