"""The Firestore sink of the ``gcp`` tracking backend: one live document per run, updated with merges.

Apps can watch a run's document; the spool's rows are turned into merge writes (``*_at`` strings as timestamps,
empty maps left out so a merge never wipes a stored map).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from expforge.gcloud_clients import firestore_client
from expforge.tracking.base import (
    RunRecord,
    parse_time,
)
from expforge.tracking.gcp_settings import GcpSettings, SendResult, describe_error, firestore_document_id


def _strip_empty(data: dict[str, Any]) -> dict[str, Any]:
    # With merge=True an empty map would *replace* the stored map; leave such fields out instead.
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = _strip_empty(value)
            if not value:
                continue
        out[key] = value
    return out


def _deep_merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _firestore_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """Spool form → Firestore form: ``*_at`` strings become timestamps, ``None`` floats in series stay null."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key.endswith("_at") and isinstance(value, str):
            out[key] = parse_time(value)
        elif isinstance(value, dict):
            out[key] = _firestore_values(value)
        else:
            out[key] = value
    return out


def firestore_doc(record: RunRecord) -> dict[str, Any]:
    data = record.to_dict()
    data["series"] = {k: {str(s): v for s, v in points} for k, points in record.series.items()}
    return data


class FirestoreSink:
    """One document per run in ``<collection>/<run id>``, updated with merges (batched writes)."""

    name = "firestore"

    def __init__(self, settings: GcpSettings) -> None:
        self.settings = settings
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The Firestore client (``FIRESTORE_EMULATOR_HOST`` points it at the emulator)."""
        if self._client is None:
            self._client = firestore_client(self.settings.project, emulator_host=self.settings.firestore_emulator_host)
        return self._client

    def send(self, entries: list[dict[str, Any]]) -> SendResult:
        """Coalesce consecutive merges per document and commit them in batches of up to 500 writes."""
        from google.api_core.retry import Retry

        ops: list[tuple[str, dict[str, Any], list[str] | None, list[int]]] = []
        for entry in entries:
            replace = entry.get("replace")
            last = ops[-1] if ops else None
            if last is not None and last[0] == entry["doc"] and last[2] is None and not replace:
                _deep_merge(last[1], entry["data"])
                last[3].append(entry["seq"])
            else:
                ops.append((entry["doc"], copy.deepcopy(entry["data"]), replace, [entry["seq"]]))
        result = SendResult()
        try:
            collection = self.client.collection(self.settings.collection)
            for start in range(0, len(ops), 500):
                batch = self.client.batch()
                part = ops[start : start + 500]
                for doc, data, replace, _ in part:
                    values = _firestore_values(data if replace else _strip_empty(data))
                    batch.set(collection.document(doc), values, merge=replace or True)
                batch.commit(retry=Retry(deadline=self.settings.timeout_s), timeout=self.settings.timeout_s)
                result.done += [seq for *_, seqs in part for seq in seqs]
        except Exception as exc:  # noqa: BLE001 - any failure keeps the rows spooled; flush reports it
            result.error = describe_error(exc)
        return result

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The stored document of ``run_id`` (for tests and tools)."""
        snapshot = self.client.collection(self.settings.collection).document(firestore_document_id(run_id)).get()
        return snapshot.to_dict() if snapshot.exists else None

    def close(self) -> None:
        """Close the gRPC channel."""
        if self._client is not None:
            self._client.close()
