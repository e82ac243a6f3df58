"""``expforge templates push|list``: pipeline templates in an Artifact Registry KFP repository."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``templates`` command group."""
    from expforge.cli_errors import one_line_errors

    group = typer.Typer(help="Pipeline templates in Artifact Registry (kfp.registry).", no_args_is_help=True)
    app.add_typer(group, name="templates")
    repo_opt = typer.Option(..., "--repo", help="https://REGION-kfp.pkg.dev/PROJECT/REPOSITORY")

    @group.command("push")
    @one_line_errors
    def push_command(
        pipelines: list[str] = typer.Argument(
            ..., help="Pipeline names (compiled here), compiled YAML files, or directories of them (every *.yaml)."
        ),
        repo: str = repo_opt,
        tag: list[str] = typer.Option([], "--tag", help="Tag for the version (repeatable), e.g. the commit SHA."),
        images: Path | None = typer.Option(None, "--images", help="Image map for compiling by name."),
    ) -> None:
        """Compile and upload pipelines; print each version's template URI (by digest)."""
        from expforge.cloud.templates import check_tag, parse_repo, push_template
        from expforge.errors import ExpforgeError

        parse_repo(repo)
        for value in tag:
            check_tag(value)
        targets: list[str] = []
        for item in pipelines:
            if Path(item).is_dir():
                found = sorted(str(p) for p in Path(item).glob("*.yaml"))
                if not found:
                    raise ExpforgeError(f"PIPELINE {item}: a directory without compiled pipelines (*.yaml)")
                targets += found
            else:
                targets.append(item)
        for target in targets:
            pushed = push_template(target, repo, tag, images=images)
            typer.echo(f"pushed {pushed.package} {pushed.version} tags: {', '.join(pushed.tags) or 'none'}", err=True)
            typer.echo(pushed.uri)

    @group.command("list")
    @one_line_errors
    def list_command(
        repo: str = repo_opt,
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Packages of the repository with their versions (newest first) and tags."""
        from expforge.cloud.templates import list_templates

        found = list_templates(repo)
        if as_json:
            typer.echo(json.dumps(found, indent=2, sort_keys=True))
            return
        for package in found:
            for version in package["versions"]:
                tags = ",".join(version["tags"]) or "-"
                typer.echo(f"{package['package']}\t{version['version']}\t{version['created']}\t{tags}")
