"""The ``expforge ui`` application: FastAPI with the JSON API under ``/api`` and the server-rendered pages.

Every asset is served by this process: our CSS/JS from the package, plotly.js from the installed ``plotly``
wheel (no CDN: the dashboard works offline). Errors answer in the client's language: JSON under ``/api``, a
small HTML page elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from expforge.errors import ExpforgeError
from expforge.ui import api, pages
from expforge.ui.store import NotFound, Store, Unavailable

STATIC = Path(__file__).parent / "static"


def plotly_js() -> Path:
    """``plotly.min.js`` inside the installed plotly package."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise ExpforgeError(f"{path}: plotly.min.js missing from the plotly package (reinstall the `ui` extra)")
    return path


def create_app(store: Store) -> FastAPI:
    """The app over ``store`` (the runs root and its tracking backend)."""
    app = FastAPI(
        title="Experiment Forge",
        description="Tracked runs, pipeline tasks, artifacts, curves, Hyperband trials and the model registry.",
        version="1",
    )
    templates = Jinja2Templates(directory=str(pages.TEMPLATES))
    plotly_path = plotly_js()

    def failure(request: Request, status: int, detail: str, field: str | None = None) -> Response:
        if request.url.path.startswith("/api/") or request.url.path == "/api":
            body = {"detail": detail, **({"field": field} if field else {})}
            return JSONResponse(body, status_code=status)
        context = {
            "page": "error",
            "status": status,
            "detail": detail,
            "tracking": store.tracking,
            "root": str(store.root),
            "problem": store.problem,
            "plots": False,
        }
        return templates.TemplateResponse(request, "error.html", context, status_code=status)

    @app.exception_handler(NotFound)
    def not_found(request: Request, exc: NotFound) -> Response:
        return failure(request, 404, str(exc))

    @app.exception_handler(Unavailable)
    def unavailable(request: Request, exc: Unavailable) -> Response:
        return failure(request, 503, str(exc))

    @app.exception_handler(api.BadInput)
    def bad_input(request: Request, exc: api.BadInput) -> Response:
        return failure(request, 422, str(exc), exc.field)

    @app.exception_handler(ExpforgeError)
    def expforge_error(request: Request, exc: ExpforgeError) -> Response:
        return failure(request, 422, str(exc))

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        response = failure(request, 422, f"{field}: {first.get('msg', 'invalid value')}", field)
        if isinstance(response, JSONResponse):
            response = JSONResponse(
                {"detail": f"{field}: {first.get('msg', 'invalid value')}", "field": field, "errors": _plain(errors)},
                status_code=422,
            )
        return response

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_asset() -> FileResponse:
        return FileResponse(plotly_path, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> HTMLResponse:
        return HTMLResponse("", status_code=204)

    app.include_router(api.router(store))
    app.include_router(pages.router(store))
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.state.store = store
    return app


def _plain(errors: object) -> object:
    """Validation errors without the exception objects pydantic puts in ``ctx`` (not JSON-serialisable)."""
    if isinstance(errors, list):
        return [_plain(e) for e in errors]
    if isinstance(errors, dict):
        return {k: (str(v) if k == "ctx" else _plain(v)) for k, v in errors.items()}
    return errors
