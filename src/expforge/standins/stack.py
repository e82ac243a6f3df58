"""All Google Cloud stand-ins at once, for ``expforge run --emulate-gcp`` and end-to-end tests.

Starts Firestore (gcloud's emulator), Cloud Storage (fake-gcs-server, with the pipeline-root bucket created),
BigQuery (bqemulator, with the tracking dataset created) and Vertex AI (the local gRPC stand-in), and yields
the environment that points the ``gcp`` tracking/registry backends and the Google Cloud clients at them.
The slow starters (the Firestore JVM, bqemulator) are launched first and waited for last, so the stack is up
in about the time of the slowest one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from expforge.standins.bigquery import BigQueryEmulator, launch_bigquery_emulator, wait_bigquery_ready
from expforge.standins.firestore import FirestoreEmulator, launch_firestore_emulator
from expforge.standins.gcs import FakeGcs, start_fake_gcs

DEFAULT_PROJECT = "expforge-local"
DEFAULT_REGION = "us-central1"
DEFAULT_DATASET = "expforge"
DEFAULT_COLLECTION = "runs"


@dataclass
class GcpStack:
    """The running stand-ins and the merged environment (``env``) that points everything at them."""

    project: str
    region: str
    bucket: str
    dataset: str
    firestore: FirestoreEmulator
    gcs: FakeGcs
    bigquery: BigQueryEmulator
    vertex: Any
    env: dict[str, str]


def stack_env(
    *,
    project: str,
    region: str,
    bucket: str,
    dataset: str,
    firestore: FirestoreEmulator,
    gcs: FakeGcs,
    bigquery: BigQueryEmulator,
    vertex: Any | None,
) -> dict[str, str]:
    """The task environment for the ``gcp`` backends against these stand-ins."""
    env: dict[str, str] = {
        **firestore.env(),
        **gcs.env(),
        **bigquery.env(),
        **(vertex.env() if vertex is not None else {"EXPFORGE_VERTEX": "off"}),
        "EXPFORGE_TRACKING": "gcp",
        "EXPFORGE_GCP_PROJECT": project,
        "GOOGLE_CLOUD_PROJECT": project,
        "EXPFORGE_GCP_REGION": region,
        "EXPFORGE_BQ_DATASET": dataset,
        "EXPFORGE_FIRESTORE_COLLECTION": DEFAULT_COLLECTION,
        "EXPFORGE_GCS_BUCKET": bucket,
        "EXPFORGE_PIPELINE_ROOT": f"gs://{bucket}/pipeline-root",
        # register-model with registry=vertex: model files go to the fake GCS bucket; the serving image is
        # only a name recorded on the model (nothing is deployed here).
        "EXPFORGE_MODEL_BUCKET": bucket,
        "EXPFORGE_SERVING_IMAGE": "expforge/serving:local",
    }
    return env


@contextlib.contextmanager
def emulated_gcp_stack(
    project: str = DEFAULT_PROJECT,
    region: str = DEFAULT_REGION,
    *,
    bucket: str | None = None,
    dataset: str = DEFAULT_DATASET,
    vertex: bool = True,
) -> Iterator[GcpStack]:
    """Start every stand-in; stop them all when the block ends (also when starting one of them failed)."""
    bucket = bucket or f"{project}-pipeline-root"
    with contextlib.ExitStack() as stack:
        firestore = launch_firestore_emulator(project=project)
        stack.callback(firestore.stop)
        bigquery = launch_bigquery_emulator(project=project)
        stack.callback(bigquery.stop)
        gcs = stack.enter_context(start_fake_gcs(project=project, buckets=[bucket]))
        vertex_standin = None
        if vertex:
            from expforge.standins.vertex import start_vertex_standin

            vertex_standin = stack.enter_context(start_vertex_standin())
        wait_bigquery_ready(bigquery)
        bigquery.create_datasets([dataset])
        firestore.wait_ready()
        env = stack_env(
            project=project,
            region=region,
            bucket=bucket,
            dataset=dataset,
            firestore=firestore,
            gcs=gcs,
            bigquery=bigquery,
            vertex=vertex_standin,
        )
        yield GcpStack(project, region, bucket, dataset, firestore, gcs, bigquery, vertex_standin, env)


@contextlib.contextmanager
def emulated_gcp(project: str = DEFAULT_PROJECT, region: str = DEFAULT_REGION) -> Iterator[dict[str, str]]:
    """The stand-ins for a ``with`` block, yielding only the environment to give every task."""
    with emulated_gcp_stack(project, region) as stack:
        yield dict(stack.env)
