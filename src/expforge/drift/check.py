"""Drift check: is the *current* set of digits distributed like the *reference* set?

Reference and current are dataset splits (synthetic vs real, train vs test, last month vs this month). Each image
becomes a row of features (:mod:`expforge.drift.features`); Evidently compares every feature column between the
two sides with four tests:

* ``jensenshannon`` — Jensen–Shannon distance of the binned distributions (Vertex Model Monitoring's test for
  numerical features); drift when ≥ its threshold.
* ``linf`` — L-infinity distance, the largest absolute difference in any bin's share (Vertex's test for
  categorical features). Evidently has no such test, so it is registered with Evidently's own stattest registry
  over Evidently's binning; drift when ≥ its threshold.
* ``ks`` — two-sample Kolmogorov–Smirnov p-value (numerical features only); drift when ≤ its threshold.
* ``psi`` — population stability index; drift when ≥ its threshold.

The categorical ``predicted_class`` column (when a model is given) gets the two Vertex tests. For each test, its
*drift share* is the fraction of the columns it examined that it flags; the gate passes when no test's share
exceeds ``max_drift_share``. Taking the share per test (Evidently's dataset-drift rule, applied once per test)
keeps one over-sensitive test — KS on thousands of rows notices shifts too small to matter — from vetoing alone
on a single column, while a shift that moves many features fails the gate under any of them.

Outputs, written together (atomically) into one directory: ``drift.json`` (everything in :class:`DriftResult`)
and ``report.html`` (Evidently's report: every column's distributions, scored with Vertex's test for its type).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from expforge.atomic import check_output, staged_directory
from expforge.data.manifest import check_split, load_arrays
from expforge.drift.features import PREDICTED_CLASS, embedding_columns, image_features, model_outputs
from expforge.errors import ExpforgeError

DRIFT_JSON = "drift.json"
REPORT_HTML = "report.html"

NUMERICAL_TESTS = ("jensenshannon", "linf", "ks", "psi")
CATEGORICAL_TESTS = ("jensenshannon", "linf")
DEFAULT_THRESHOLDS: dict[str, float] = {"jensenshannon": 0.1, "linf": 0.1, "ks": 0.05, "psi": 0.2}
#: Each test's name as a parameter of the drift-check component (so errors name what the user set).
THRESHOLD_PARAMETERS = {
    "jensenshannon": "js_threshold",
    "linf": "linf_threshold",
    "ks": "ks_pvalue",
    "psi": "psi_threshold",
}
#: Short names accepted on the command line (``--threshold js=0.1``).
THRESHOLD_ALIASES = {"js": "jensenshannon", "jensenshannon": "jensenshannon", "linf": "linf", "ks": "ks", "psi": "psi"}
DEFAULT_MAX_DRIFT_SHARE = 0.5
#: The numbers a drift check reports, by the names alert rules and the component's metrics use.
REPORTED_METRICS = ("drift_share", *(f"drift_share_{test}" for test in NUMERICAL_TESTS), "gate_passed")
DEFAULT_SAMPLE_SIZE = 2000


@dataclass
class DriftResult:
    """Every number the check produced; ``gate_passed`` is what a pipeline branches on."""

    gate_passed: bool
    drift_share: float  # the largest per-test share: the number compared with max_drift_share
    share_by_test: dict[str, float]
    drifted_features: list[str]  # columns flagged by at least one test
    features: dict[str, dict[str, dict[str, Any]]]  # column → test → {score, threshold, drifted}
    thresholds: dict[str, float]
    max_drift_share: float
    reference: dict[str, Any]
    current: dict[str, Any]
    model: dict[str, Any] | None = None
    columns: dict[str, list[str]] = field(default_factory=dict)  # numerical / categorical column names

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def reported_metrics(self) -> dict[str, float]:
        """:data:`REPORTED_METRICS` of this result (``gate_passed`` as 0/1)."""
        shares = {f"drift_share_{test}": share for test, share in self.share_by_test.items()}
        return {"drift_share": self.drift_share, **shares, "gate_passed": float(self.gate_passed)}


# --- parameters ---------------------------------------------------------------------------------------------------


def _check_unit_interval(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExpforgeError(f"{name}: {value!r} is not a number; expected a value in [0, 1]")
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ExpforgeError(f"{name}: {value} is outside [0, 1]")
    return float(value)


def resolve_thresholds(thresholds: Mapping[str, float] | None) -> dict[str, float]:
    """Defaults overlaid with ``thresholds`` (keys: test names or the aliases ``js``…); each must lie in [0, 1].

    Every test here is a distance in [0, 1] or a p-value, so a threshold outside [0, 1] is a typo, not a choice
    (PSI can exceed 1 in principle, but a PSI threshold above 1 would hide any drift worth knowing about).
    """
    resolved = dict(DEFAULT_THRESHOLDS)
    for key, value in (thresholds or {}).items():
        test = THRESHOLD_ALIASES.get(key)
        if test is None:
            raise ExpforgeError(
                f"drift threshold {key!r}: unknown test; expected one of {', '.join(sorted(set(THRESHOLD_ALIASES)))}"
            )
        resolved[test] = _check_unit_interval(value, f"drift threshold {test} ({THRESHOLD_PARAMETERS[test]})")
    return resolved


def parse_threshold_options(options: list[str]) -> dict[str, float]:
    """``["js=0.1", "psi=0.25"]`` → ``{"jensenshannon": 0.1, "psi": 0.25}`` (validated)."""
    parsed: dict[str, float] = {}
    for option in options:
        key, sep, raw = option.partition("=")
        if not sep:
            raise ExpforgeError(f"--threshold {option!r}: expected TEST=VALUE, e.g. js=0.1")
        try:
            value = float(raw)
        except ValueError:
            raise ExpforgeError(f"--threshold {option!r}: {raw!r} is not a number") from None
        parsed[key.strip()] = value
    return resolve_thresholds(parsed)


# --- Evidently -----------------------------------------------------------------------------------------------------


def _linf_distance(reference: Any, current: Any, feature_type: Any, threshold: float, n_bins: int = 30) -> tuple:
    """L-infinity distance between the two binned distributions (Evidently's binning: value shares for
    categories and few-valued columns, shared Sturges bins otherwise). Only the final max |Δshare| is ours."""
    from evidently.legacy.calculations.stattests.utils import get_binned_data

    reference_shares, current_shares = get_binned_data(reference, current, feature_type, n_bins, feel_zeroes=False)
    distance = float(np.max(np.abs(np.asarray(reference_shares) - np.asarray(current_shares)), initial=0.0))
    return distance, distance >= threshold


def register_linf_stattest() -> None:
    """Register ``linf`` with Evidently's stattest registry (idempotent), so ``ValueDrift(method="linf")`` works."""
    from evidently.legacy.calculations.stattests.registry import StatTest, _registered_stat_tests, register_stattest
    from evidently.legacy.core import ColumnType

    if "linf" in _registered_stat_tests:
        return
    register_stattest(
        StatTest(
            name="linf",
            display_name="L-infinity distance",
            allowed_feature_types=[ColumnType.Categorical, ColumnType.Numerical],
            default_threshold=DEFAULT_THRESHOLDS["linf"],
        ),
        _linf_distance,
    )


def column_tests(numerical: list[str], categorical: list[str]) -> list[tuple[str, str]]:
    """Every (column, test) pair the check runs."""
    plan = [(column, test) for column in numerical for test in NUMERICAL_TESTS]
    return plan + [(column, test) for column in categorical for test in CATEGORICAL_TESTS]


def run_stattests(
    reference: Any, current: Any, numerical: list[str], categorical: list[str], thresholds: Mapping[str, float]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Score every (column, test) pair with Evidently's stattests: column → test → {score, threshold, drifted}.

    These are the calls Evidently's ``ValueDrift`` metric makes (resolve the test in Evidently's registry, apply it
    with the threshold); the drift decision — p-value below, distance above — is Evidently's too. They are called
    directly because a ``ValueDrift`` metric also draws two Plotly figures per column, which for every
    column × test pair costs far more than the statistics; the HTML report draws each column once instead.
    """
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    register_linf_stattest()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for column, test in column_tests(numerical, categorical):
        column_type = ColumnType.Categorical if column in categorical else ColumnType.Numerical
        ref = reference[column].replace([-np.inf, np.inf], np.nan).dropna()
        cur = current[column].replace([-np.inf, np.inf], np.nan).dropna()
        if ref.empty or cur.empty:
            raise ExpforgeError(
                f"feature {column}: no finite values on the {'reference' if ref.empty else 'current'} side"
            )
        outcome = get_stattest(ref, cur, column_type, test)(ref, cur, column_type, thresholds[test])
        score = float(outcome.drift_score)
        results.setdefault(column, {})[test] = {
            "score": None if math.isnan(score) else score,
            "threshold": float(outcome.actual_threshold),
            "drifted": bool(outcome.drifted),
        }
    return results


def evidently_report(
    reference: Any, current: Any, numerical: list[str], categorical: list[str], thresholds: Mapping[str, float]
) -> Any:
    """Evidently's report (a snapshot with ``save_html``): for every column, its two distributions and the test
    Vertex Model Monitoring applies to its type — Jensen–Shannon for numbers, L-infinity for categories — with
    pass/fail. (All four tests' scores are in ``drift.json``; drawing every column once keeps the report fast.)"""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    register_linf_stattest()
    metrics = [ValueDrift(column=c, method="jensenshannon", threshold=thresholds["jensenshannon"]) for c in numerical]
    metrics += [ValueDrift(column=c, method="linf", threshold=thresholds["linf"]) for c in categorical]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    return Report(metrics, include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )


# --- the check -----------------------------------------------------------------------------------------------------


def _sample(images: np.ndarray, sample_size: int, rng: np.random.Generator) -> np.ndarray:
    if len(images) <= sample_size:
        return images
    return images[np.sort(rng.choice(len(images), size=sample_size, replace=False))]


def _side(dataset: Path, split: str, images: np.ndarray, total: int) -> dict[str, Any]:
    return {"dataset": str(dataset), "split": split, "rows": total, "sampled": len(images)}


def check_drift(
    reference_dir: Path | str,
    current_dir: Path | str,
    *,
    reference_split: str = "train",
    current_split: str = "test",
    model: Path | str | None = None,
    thresholds: Mapping[str, float] | None = None,
    max_drift_share: float = DEFAULT_MAX_DRIFT_SHARE,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    output: Path | str | None = None,
    overwrite: bool = False,
) -> DriftResult:
    """Compare ``current_split`` of ``current_dir`` with ``reference_split`` of ``reference_dir``.

    At most ``sample_size`` images per side are used (a seeded sample): the tests' power grows with the sample,
    and past a few thousand rows every test flags differences nobody would act on. With ``model``, its
    embeddings (PCA, fitted on the reference) and predicted class join the image features. With ``output``,
    ``drift.json`` and ``report.html`` are written there as a whole once both exist; an existing non-empty
    ``output`` is refused unless ``overwrite``, and one that is or holds an input always (checked first).
    """
    import pandas as pd

    resolved = resolve_thresholds(thresholds)
    max_drift_share = _check_unit_interval(max_drift_share, "max_drift_share")
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 2:
        raise ExpforgeError(f"sample_size: {sample_size!r}; expected an integer ≥ 2")
    check_split(reference_split, where="reference_split")
    check_split(current_split, where="current_split")
    reference_dir, current_dir = Path(reference_dir), Path(current_dir)
    inputs = [reference_dir, current_dir, model]
    if output is not None:
        check_output(output, directory=True, inputs=inputs, overwrite=overwrite, flag="--output")

    rng = np.random.default_rng(seed)
    all_reference, _, _ = load_arrays(reference_dir, [reference_split])
    all_current, _, _ = load_arrays(current_dir, [current_split])
    reference_images = _sample(all_reference, sample_size, rng)
    current_images = _sample(all_current, sample_size, rng)

    reference_columns: dict[str, Any] = dict(image_features(reference_images))
    current_columns: dict[str, Any] = dict(image_features(current_images))
    numerical = list(reference_columns)
    categorical: list[str] = []
    model_info: dict[str, Any] | None = None
    if model is not None:
        reference_out = model_outputs(model, reference_images)
        current_out = model_outputs(model, current_images)
        reference_pcs, current_pcs = embedding_columns(reference_out.vectors, current_out.vectors, seed=seed)
        reference_columns.update(reference_pcs)
        current_columns.update(current_pcs)
        numerical += list(reference_pcs)
        # Categories as strings: Evidently bins categorical columns by value, and strings cannot be mistaken
        # for a numeric column whose bins are ranges.
        reference_columns[PREDICTED_CLASS] = reference_out.predicted.astype(str)
        current_columns[PREDICTED_CLASS] = current_out.predicted.astype(str)
        categorical.append(PREDICTED_CLASS)
        model_info = {"path": str(model), "vectors": reference_out.source, "components": len(reference_pcs)}

    reference_frame = pd.DataFrame(reference_columns)
    current_frame = pd.DataFrame(current_columns)
    per_column = run_stattests(reference_frame, current_frame, numerical, categorical, resolved)

    share_by_test: dict[str, float] = {}
    for test in NUMERICAL_TESTS:
        examined = [results[test]["drifted"] for results in per_column.values() if test in results]
        share_by_test[test] = sum(examined) / len(examined)
    drift_share = max(share_by_test.values())
    result = DriftResult(
        gate_passed=drift_share <= max_drift_share,
        drift_share=drift_share,
        share_by_test=share_by_test,
        drifted_features=[c for c, results in per_column.items() if any(r["drifted"] for r in results.values())],
        features=per_column,
        thresholds=resolved,
        max_drift_share=max_drift_share,
        reference=_side(reference_dir, reference_split, reference_images, len(all_reference)),
        current=_side(current_dir, current_split, current_images, len(all_current)),
        model=model_info,
        columns={"numerical": numerical, "categorical": categorical},
    )
    if output is not None:
        snapshot = evidently_report(reference_frame, current_frame, numerical, categorical, resolved)
        write_outputs(result, snapshot, output, overwrite=overwrite, inputs=inputs)
    return result


def write_outputs(
    result: DriftResult,
    snapshot: Any,
    output: Path | str,
    *,
    overwrite: bool = False,
    inputs: list[Path | str | None] | None = None,
) -> Path:
    """Write ``drift.json`` and Evidently's ``report.html`` into ``output``, atomically as a pair."""
    output = Path(output)
    with staged_directory(output, overwrite=overwrite, inputs=inputs or (), flag="--output") as staging:
        (staging / DRIFT_JSON).write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n", "utf-8")
        snapshot.save_html(str(staging / REPORT_HTML))
    return output


def read_result(output: Path | str) -> dict[str, Any]:
    """Read ``drift.json`` back from a drift-check output directory."""
    path = Path(output) / DRIFT_JSON
    if not path.is_file():
        raise ExpforgeError(f"{path}: not found; expected the output directory of a drift check")
    return json.loads(path.read_text(encoding="utf-8"))
