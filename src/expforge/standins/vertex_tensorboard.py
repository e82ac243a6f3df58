"""``TensorboardService`` of the Vertex AI stand-in: where ``aiplatform.log_time_series_metrics`` writes.

An experiment's time-series metrics live in its backing Tensorboard: ``tensorboards/T/experiments/E/runs/R/
timeSeries/S`` (one time series per metric, unique by display name within a run), points appended by
``WriteTensorboardRunData`` / ``WriteTensorboardExperimentData`` and read back by
``ReadTensorboardTimeSeriesData`` (what ``ExperimentRun.get_time_series_data_frame`` calls). One generic
in-memory tree serves the four resource levels.
"""

from __future__ import annotations

from typing import Any

import proto
from google.cloud.aiplatform_v1 import types
from google.longrunning import operations_pb2
from google.protobuf import field_mask_pb2

from expforge.standins.vertex_filter import compile_filter
from expforge.standins.vertex_grpc import V1, already_exists, invalid, not_found, rpc
from expforge.standins.vertex_operations import Operations
from expforge.standins.vertex_resources import ResourceService, check_location, child_id, copy_message, now, paginate

_DEFAULT_MAX_POINTS = 1000


class Tensorboards(ResourceService):
    """In-memory Tensorboards, experiments, runs, time series and their scalar points."""

    SERVICE = f"{V1}.TensorboardService"

    def __init__(self, operations: Operations) -> None:
        super().__init__(operations, 9_000_000_000_000_000_000)
        self._resources: dict[str, Any] = {}  # name -> Tensorboard | ...Experiment | ...Run | ...TimeSeries
        self._points: dict[str, list[types.TimeSeriesDataPoint]] = {}  # time series name -> points

    # --- generic tree ------------------------------------------------------------------------------------

    def _get(self, name: str, kind: type[proto.Message]) -> Any:
        resource = self._resources.get(name)
        if not isinstance(resource, kind):
            raise not_found(f"{kind.__name__} {name}")
        return resource

    def _create(
        self, parent: str, resource: Any, resource_id: str, collection: str, parent_kind: type[proto.Message] | None
    ) -> Any:
        with self._lock:
            if parent_kind is None:
                check_location(parent)
            else:
                self._get(parent, parent_kind)
            resource = copy_message(resource)
            resource.name = f"{parent}/{collection}/{child_id(resource_id, self._ids)}"
            if resource.name in self._resources:
                raise already_exists(f"{type(resource).__name__} {resource.name}")
            if isinstance(resource, types.TensorboardTimeSeries):
                if not resource.display_name:
                    raise invalid("tensorboard_time_series.display_name is required")
                if any(
                    isinstance(other, types.TensorboardTimeSeries)
                    and other.name.startswith(f"{parent}/timeSeries/")
                    and other.display_name == resource.display_name
                    for other in self._resources.values()
                ):
                    raise already_exists(f"TensorboardTimeSeries {resource.display_name!r} in {parent}")
                self._points[resource.name] = []
            resource.create_time = resource.update_time = now()
            resource.etag = "1"
            self._resources[resource.name] = resource
            return copy_message(resource)

    def _list(self, parent: str, kind: type[proto.Message], collection: str, request: Any) -> tuple[list, str]:
        keep = compile_filter(request.filter)
        prefix = f"{parent}/{collection}/"
        with self._lock:
            found = [
                copy_message(r)
                for name, r in self._resources.items()
                if isinstance(r, kind)
                and name.startswith(prefix)
                and "/" not in name[len(prefix) :]
                and keep(kind.to_dict(r, preserving_proto_field_name=True))
            ]
        return paginate(found, request.page_size, request.page_token)

    def _update(self, resource: Any, kind: type[proto.Message], mask: field_mask_pb2.FieldMask) -> Any:
        with self._lock:
            stored = self._get(resource.name, kind)
            for path in mask.paths or ("display_name", "description", "labels"):
                if path not in kind.meta.fields or path in ("name", "create_time", "etag"):
                    raise invalid(f"update_mask: field {path!r} cannot be updated")
                setattr(stored, path, getattr(resource, path))
            stored.update_time = now()
            return copy_message(stored)

    def _delete(self, name: str, kind: type[proto.Message]) -> operations_pb2.Operation:
        with self._lock:
            self._get(name, kind)
            for child in [n for n in self._resources if n == name or n.startswith(f"{name}/")]:
                del self._resources[child]
                self._points.pop(child, None)
        return self._operations.finished(name, None, types.DeleteOperationMetadata())

    def _write(self, run: str, data: list[types.TimeSeriesData]) -> None:
        self._get(run, types.TensorboardRun)
        for series in data:
            name = f"{run}/timeSeries/{series.tensorboard_time_series_id}"
            stored = self._get(name, types.TensorboardTimeSeries)
            if series.value_type and series.value_type != stored.value_type:
                raise invalid(f"{name}: value type {series.value_type.name} does not match {stored.value_type.name}")
            self._points[name].extend(copy_message(point) for point in series.values)
            stored.update_time = now()

    # --- tensorboards ------------------------------------------------------------------------------------

    @rpc(types.CreateTensorboardRequest, operations_pb2.Operation)
    def create_tensorboard(self, request: types.CreateTensorboardRequest) -> operations_pb2.Operation:
        """Create a Tensorboard (long-running in Vertex; done at once here)."""
        created = self._create(request.parent, request.tensorboard, "", "tensorboards", None)
        return self._operations.finished(created.name, created, types.CreateTensorboardOperationMetadata())

    @rpc(types.GetTensorboardRequest, types.Tensorboard)
    def get_tensorboard(self, request: types.GetTensorboardRequest) -> types.Tensorboard:
        """One Tensorboard."""
        with self._lock:
            return copy_message(self._get(request.name, types.Tensorboard))

    @rpc(types.ListTensorboardsRequest, types.ListTensorboardsResponse)
    def list_tensorboards(self, request: types.ListTensorboardsRequest) -> types.ListTensorboardsResponse:
        """Tensorboards of a location (``is_default=true`` is how the SDK finds the default one)."""
        page, token = self._list(request.parent, types.Tensorboard, "tensorboards", request)
        return types.ListTensorboardsResponse(tensorboards=page, next_page_token=token)

    @rpc(types.UpdateTensorboardRequest, operations_pb2.Operation)
    def update_tensorboard(self, request: types.UpdateTensorboardRequest) -> operations_pb2.Operation:
        """Update fields (``is_default`` too: only one Tensorboard per location is the default)."""
        with self._lock:
            if "is_default" in request.update_mask.paths and request.tensorboard.is_default:
                location = request.tensorboard.name.split("/tensorboards/")[0]
                for resource in self._resources.values():
                    if isinstance(resource, types.Tensorboard) and resource.name.startswith(f"{location}/"):
                        resource.is_default = False
            updated = self._update(request.tensorboard, types.Tensorboard, request.update_mask)
        return self._operations.finished(updated.name, updated, types.UpdateTensorboardOperationMetadata())

    @rpc(types.DeleteTensorboardRequest, operations_pb2.Operation)
    def delete_tensorboard(self, request: types.DeleteTensorboardRequest) -> operations_pb2.Operation:
        """Delete a Tensorboard and everything in it."""
        return self._delete(request.name, types.Tensorboard)

    # --- experiments -------------------------------------------------------------------------------------

    @rpc(types.CreateTensorboardExperimentRequest, types.TensorboardExperiment)
    def create_tensorboard_experiment(
        self, request: types.CreateTensorboardExperimentRequest
    ) -> types.TensorboardExperiment:
        """CreateTensorboardExperiment."""
        return self._create(
            request.parent,
            request.tensorboard_experiment,
            request.tensorboard_experiment_id,
            "experiments",
            types.Tensorboard,
        )

    @rpc(types.GetTensorboardExperimentRequest, types.TensorboardExperiment)
    def get_tensorboard_experiment(self, request: types.GetTensorboardExperimentRequest) -> types.TensorboardExperiment:
        """One experiment."""
        with self._lock:
            return copy_message(self._get(request.name, types.TensorboardExperiment))

    @rpc(types.ListTensorboardExperimentsRequest, types.ListTensorboardExperimentsResponse)
    def list_tensorboard_experiments(
        self, request: types.ListTensorboardExperimentsRequest
    ) -> types.ListTensorboardExperimentsResponse:
        """Experiments of a Tensorboard."""
        page, token = self._list(request.parent, types.TensorboardExperiment, "experiments", request)
        return types.ListTensorboardExperimentsResponse(tensorboard_experiments=page, next_page_token=token)

    @rpc(types.UpdateTensorboardExperimentRequest, types.TensorboardExperiment)
    def update_tensorboard_experiment(
        self, request: types.UpdateTensorboardExperimentRequest
    ) -> types.TensorboardExperiment:
        """Update fields."""
        return self._update(request.tensorboard_experiment, types.TensorboardExperiment, request.update_mask)

    @rpc(types.DeleteTensorboardExperimentRequest, operations_pb2.Operation)
    def delete_tensorboard_experiment(
        self, request: types.DeleteTensorboardExperimentRequest
    ) -> operations_pb2.Operation:
        """Delete an experiment and its runs."""
        return self._delete(request.name, types.TensorboardExperiment)

    @rpc(types.WriteTensorboardExperimentDataRequest, types.WriteTensorboardExperimentDataResponse)
    def write_tensorboard_experiment_data(
        self, request: types.WriteTensorboardExperimentDataRequest
    ) -> types.WriteTensorboardExperimentDataResponse:
        """Append points to time series of several runs of one experiment."""
        with self._lock:
            self._get(request.tensorboard_experiment, types.TensorboardExperiment)
            for run_request in request.write_run_data_requests:
                if not run_request.tensorboard_run.startswith(f"{request.tensorboard_experiment}/runs/"):
                    raise invalid(f"{run_request.tensorboard_run} is not a run of {request.tensorboard_experiment}")
                self._write(run_request.tensorboard_run, list(run_request.time_series_data))
        return types.WriteTensorboardExperimentDataResponse()

    # --- runs --------------------------------------------------------------------------------------------

    @rpc(types.CreateTensorboardRunRequest, types.TensorboardRun)
    def create_tensorboard_run(self, request: types.CreateTensorboardRunRequest) -> types.TensorboardRun:
        """CreateTensorboardRun."""
        return self._create(
            request.parent, request.tensorboard_run, request.tensorboard_run_id, "runs", types.TensorboardExperiment
        )

    @rpc(types.BatchCreateTensorboardRunsRequest, types.BatchCreateTensorboardRunsResponse)
    def batch_create_tensorboard_runs(
        self, request: types.BatchCreateTensorboardRunsRequest
    ) -> types.BatchCreateTensorboardRunsResponse:
        """Several CreateTensorboardRun at once."""
        runs = [self.create_tensorboard_run(r) for r in request.requests]
        return types.BatchCreateTensorboardRunsResponse(tensorboard_runs=runs)

    @rpc(types.GetTensorboardRunRequest, types.TensorboardRun)
    def get_tensorboard_run(self, request: types.GetTensorboardRunRequest) -> types.TensorboardRun:
        """One run."""
        with self._lock:
            return copy_message(self._get(request.name, types.TensorboardRun))

    @rpc(types.ListTensorboardRunsRequest, types.ListTensorboardRunsResponse)
    def list_tensorboard_runs(self, request: types.ListTensorboardRunsRequest) -> types.ListTensorboardRunsResponse:
        """Runs of an experiment."""
        page, token = self._list(request.parent, types.TensorboardRun, "runs", request)
        return types.ListTensorboardRunsResponse(tensorboard_runs=page, next_page_token=token)

    @rpc(types.UpdateTensorboardRunRequest, types.TensorboardRun)
    def update_tensorboard_run(self, request: types.UpdateTensorboardRunRequest) -> types.TensorboardRun:
        """Update fields."""
        return self._update(request.tensorboard_run, types.TensorboardRun, request.update_mask)

    @rpc(types.DeleteTensorboardRunRequest, operations_pb2.Operation)
    def delete_tensorboard_run(self, request: types.DeleteTensorboardRunRequest) -> operations_pb2.Operation:
        """Delete a run and its time series."""
        return self._delete(request.name, types.TensorboardRun)

    @rpc(types.WriteTensorboardRunDataRequest, types.WriteTensorboardRunDataResponse)
    def write_tensorboard_run_data(
        self, request: types.WriteTensorboardRunDataRequest
    ) -> types.WriteTensorboardRunDataResponse:
        """Append points to time series of one run."""
        with self._lock:
            self._write(request.tensorboard_run, list(request.time_series_data))
        return types.WriteTensorboardRunDataResponse()

    # --- time series -------------------------------------------------------------------------------------

    @rpc(types.CreateTensorboardTimeSeriesRequest, types.TensorboardTimeSeries)
    def create_tensorboard_time_series(
        self, request: types.CreateTensorboardTimeSeriesRequest
    ) -> types.TensorboardTimeSeries:
        """A time series (display name unique within its run)."""
        return self._create(
            request.parent,
            request.tensorboard_time_series,
            request.tensorboard_time_series_id,
            "timeSeries",
            types.TensorboardRun,
        )

    @rpc(types.BatchCreateTensorboardTimeSeriesRequest, types.BatchCreateTensorboardTimeSeriesResponse)
    def batch_create_tensorboard_time_series(
        self, request: types.BatchCreateTensorboardTimeSeriesRequest
    ) -> types.BatchCreateTensorboardTimeSeriesResponse:
        """Several time series at once (each request names its run as parent)."""
        created = [self.create_tensorboard_time_series(r) for r in request.requests]
        return types.BatchCreateTensorboardTimeSeriesResponse(tensorboard_time_series=created)

    @rpc(types.GetTensorboardTimeSeriesRequest, types.TensorboardTimeSeries)
    def get_tensorboard_time_series(
        self, request: types.GetTensorboardTimeSeriesRequest
    ) -> types.TensorboardTimeSeries:
        """One time series."""
        with self._lock:
            return copy_message(self._get(request.name, types.TensorboardTimeSeries))

    @rpc(types.ListTensorboardTimeSeriesRequest, types.ListTensorboardTimeSeriesResponse)
    def list_tensorboard_time_series(
        self, request: types.ListTensorboardTimeSeriesRequest
    ) -> types.ListTensorboardTimeSeriesResponse:
        """Time series of a run (the SDK filters by display name)."""
        page, token = self._list(request.parent, types.TensorboardTimeSeries, "timeSeries", request)
        return types.ListTensorboardTimeSeriesResponse(tensorboard_time_series=page, next_page_token=token)

    @rpc(types.DeleteTensorboardTimeSeriesRequest, operations_pb2.Operation)
    def delete_tensorboard_time_series(
        self, request: types.DeleteTensorboardTimeSeriesRequest
    ) -> operations_pb2.Operation:
        """Delete a time series and its points."""
        return self._delete(request.name, types.TensorboardTimeSeries)

    def _series_data(self, name: str, max_points: int) -> types.TimeSeriesData:
        stored = self._get(name, types.TensorboardTimeSeries)
        points = sorted(self._points[name], key=lambda p: p.step)
        limit = max_points if max_points > 0 else _DEFAULT_MAX_POINTS
        if len(points) > limit:  # Vertex samples long series; keep an even spread including the last point
            stride = len(points) / limit
            points = [points[min(len(points) - 1, round((i + 1) * stride) - 1)] for i in range(limit)]
        return types.TimeSeriesData(
            tensorboard_time_series_id=name.rsplit("/", 1)[1],
            value_type=stored.value_type,
            values=[copy_message(p) for p in points],
        )

    @rpc(types.ReadTensorboardTimeSeriesDataRequest, types.ReadTensorboardTimeSeriesDataResponse)
    def read_tensorboard_time_series_data(
        self, request: types.ReadTensorboardTimeSeriesDataRequest
    ) -> types.ReadTensorboardTimeSeriesDataResponse:
        """The points of one time series, by step (at most ``max_data_points``, default 1000)."""
        with self._lock:
            data = self._series_data(request.tensorboard_time_series, request.max_data_points)
        return types.ReadTensorboardTimeSeriesDataResponse(time_series_data=data)

    @rpc(types.BatchReadTensorboardTimeSeriesDataRequest, types.BatchReadTensorboardTimeSeriesDataResponse)
    def batch_read_tensorboard_time_series_data(
        self, request: types.BatchReadTensorboardTimeSeriesDataRequest
    ) -> types.BatchReadTensorboardTimeSeriesDataResponse:
        """Points of several time series of one Tensorboard."""
        with self._lock:
            data = [self._series_data(name, 0) for name in request.time_series]
        return types.BatchReadTensorboardTimeSeriesDataResponse(time_series_data=data)

    @rpc(types.ExportTensorboardTimeSeriesDataRequest, types.ExportTensorboardTimeSeriesDataResponse)
    def export_tensorboard_time_series_data(
        self, request: types.ExportTensorboardTimeSeriesDataRequest
    ) -> types.ExportTensorboardTimeSeriesDataResponse:
        """Every point of one time series, paged."""
        with self._lock:
            self._get(request.tensorboard_time_series, types.TensorboardTimeSeries)
            points = sorted(self._points[request.tensorboard_time_series], key=lambda p: p.step)
        page, token = paginate(points, request.page_size, request.page_token)
        return types.ExportTensorboardTimeSeriesDataResponse(time_series_data_points=page, next_page_token=token)
