"""``apply``, ``get`` and ``delete``: generic over the kind descriptors of the registry.

A KIND argument is any noun, plural or alias the registry knows (``mesh``, ``meshes``,
``mtp``, ``MeshTrafficPermission``); paths come from the descriptor, so a new kind needs
nothing here.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any

import click

from cli.client import collection_path, resource_path
from cli.output import table, to_json, to_yaml, to_yaml_stream
from cli.state import state
from gossamer.errors import FieldError, InvalidResource
from gossamer.model.kind_index import KINDS, KindName, check_name, find_kind

if TYPE_CHECKING:
    from cli.documents import SourceDocument

DEFAULT_MESH = "default"
_BATCH_FIELD_RE = re.compile(r"^documents\[(\d+)\]\.?(.*)$")
_SELECTOR_RE = re.compile(r"^[^=,\s]+=[^=,\s]*$")


def _kind(value: str) -> KindName:
    """The kind named on the command line, from the plain table: ``get`` and ``delete``
    import no kind's model (``tests/unit/test_cli_imports.py``)."""
    desc = find_kind(value)
    if desc is None:
        known = ", ".join(d.noun for d in KINDS)
        raise click.BadParameter(f"unknown kind {value!r}; one of: {known}", param_hint="KIND")
    return desc


def _checked_name(value: str, what: str) -> str:
    errors = check_name(value, what)
    if errors:
        raise click.BadParameter(f"{value!r}: {errors[0].message}", param_hint=what.upper())
    return value


def _mesh(desc: KindName, mesh: str | None, all_meshes: bool = False) -> str | None:
    """The mesh to address, or None for global kinds and for ``-A``."""
    if not desc.mesh_scoped:
        if mesh:
            raise click.UsageError(f"{desc.name} is not mesh-scoped: drop -m/--mesh")
        return None
    if all_meshes:
        if mesh:
            raise click.UsageError("-m/--mesh and -A/--all-meshes exclude each other")
        return None
    return _checked_name(mesh or DEFAULT_MESH, "mesh")


def _noun(type_name: Any) -> str:
    desc = find_kind(str(type_name))
    return desc.noun if desc is not None else str(type_name).lower()


def _relocate(exc: InvalidResource, docs: list[SourceDocument]) -> InvalidResource:
    """Name the server's ``documents[i].field`` problems by file and document instead."""
    errors = []
    for err in exc.field_errors:
        m = _BATCH_FIELD_RE.match(err.path)
        if m and int(m[1]) < len(docs):
            loc = docs[int(m[1])].location
            errors.append(FieldError(f"{loc}: {m[2]}" if m[2] else loc, err.message))
        else:
            errors.append(err)
    summary = exc.detail.removesuffix(": " + "; ".join(str(e) for e in exc.field_errors))
    from cli.documents import InputProblems

    return InputProblems(f"the control plane refused the batch, nothing was applied "
                         f"({summary})", errors)


@click.command()
@click.option("-f", "--filename", "files", multiple=True, required=True,
              metavar="FILE|DIR|-",
              help="A YAML file (several documents separated by ---), a JSON file, a "
                   "directory (its *.yaml, *.yml and *.json, sorted) or - for stdin. "
                   "Repeatable.")
@click.option("--dry-run", is_flag=True,
              help="Have the control plane validate the documents without storing them.")
@click.option("-m", "--mesh", default=None,
              help="The mesh of mesh-scoped documents that name none (otherwise 'default').")
@click.pass_context
def apply(ctx: click.Context, files: tuple[str, ...], dry_run: bool, mesh: str | None) -> None:
    """Create or update resources from YAML or JSON documents.

    Every document is validated locally first; if any is invalid, every problem is
    printed as FILE#docN: FIELD: MESSAGE (N counts the documents of a file from 1) and
    nothing is sent. Otherwise the documents go to the control plane as one batch, which
    again stores nothing unless all of them are valid.
    """
    from cli.documents import load_documents  # the kinds' models: apply validates locally

    if mesh is not None:
        _checked_name(mesh, "mesh")
    docs = load_documents(files, _read_stdin, mesh)
    with state(ctx).client() as api:
        try:
            results = api.apply([d.body for d in docs], dry_run)
        except InvalidResource as exc:
            raise _relocate(exc, docs) from None
    for r in results:
        action = r.get("action", "?")
        suffix = " (dry run)" if dry_run else ""
        click.echo(f"{_noun(r.get('type'))}/{r.get('name')} {action}{suffix}")


def _read_stdin(limit: int) -> bytes:
    return sys.stdin.buffer.read(limit)


def _check_selector(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if value is not None and not all(_SELECTOR_RE.match(p) for p in value.split(",")):
        raise click.BadParameter("expected key=value[,key2=value2...]")
    return value


@click.command()
@click.argument("kind")
@click.argument("name", required=False)
@click.option("-m", "--mesh", default=None, help="The mesh (default: 'default').")
@click.option("-A", "--all-meshes", is_flag=True, help="List across every mesh.")
@click.option("-o", "--output", type=click.Choice(["table", "yaml", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("-l", "--selector", default=None, callback=_check_selector,
              metavar="KEY=VALUE,...", help="Only resources whose labels match all pairs.")
@click.pass_context
def get(ctx: click.Context, kind: str, name: str | None, mesh: str | None, all_meshes: bool,
        output: str, selector: str | None) -> None:
    """Show one resource (with NAME) or list them.

    KIND is a noun, plural or short alias: mesh, meshes, mtp, meshtimeouts, dp...
    With -o yaml, one resource prints as one document and a list as a multi-document
    stream (one --- before each); with -o json a list prints as {"items": [...]}.
    `gossamer apply -f` reads both back.
    """
    desc = _kind(kind)
    if name is not None and (all_meshes or selector):
        raise click.UsageError("NAME cannot be combined with -A/--all-meshes or -l/--selector")
    target_mesh = _mesh(desc, mesh, all_meshes)
    st = state(ctx)
    with st.client() as api:
        try:
            if name is not None:
                _checked_name(name, "name")
                docs = [api.get_one(resource_path(desc, target_mesh, name))]
            else:
                docs = api.list_all(collection_path(desc, target_mesh), labels=selector)
        finally:  # a 404 from the cache is as stale as a 200
            if api.stale:
                click.echo(f"notice: the control plane answered from its cache, its store "
                           f"does not answer: {api.stale}", err=True)
    if output == "yaml":
        click.echo(to_yaml(docs[0]) if name else to_yaml_stream(docs), nl=False)
    elif output == "json":
        click.echo(to_json(docs[0] if name else {"items": docs}))
    elif docs:
        click.echo(table(desc, docs, st.now()))
    else:
        where = f" in mesh {target_mesh}" if target_mesh else ""
        click.echo(f"No {desc.plural} found{where}.", err=True)


@click.command()
@click.argument("kind")
@click.argument("name")
@click.option("-m", "--mesh", default=None, help="The mesh (default: 'default').")
@click.pass_context
def delete(ctx: click.Context, kind: str, name: str, mesh: str | None) -> None:
    """Delete one resource."""
    desc = _kind(kind)
    target_mesh = _mesh(desc, mesh)
    _checked_name(name, "name")
    with state(ctx).client() as api:
        api.delete(resource_path(desc, target_mesh, name))
    click.echo(f"{desc.noun}/{name} deleted")

