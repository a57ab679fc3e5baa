"""``gossamer completion bash|zsh|fish``: the shell script that completes ``gossamer``.

Click completes commands itself: the script it emits calls ``gossamer`` back with
``_GOSSAMER_COMPLETE=<shell>_complete`` and the words typed so far, and click answers
with the subcommands, options and choices that fit (``LazyGroup.list_commands`` names
every subcommand without importing it). This command prints the same script as
``_GOSSAMER_COMPLETE=<shell>_source gossamer``, under a name people remember, the way
``kubectl completion bash`` does::

    source <(gossamer completion bash)                 # in ~/.bashrc
    gossamer completion fish > ~/.config/fish/completions/gossamer.fish
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

PROG = "gossamer"
COMPLETE_VAR = "_GOSSAMER_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    bash:  source <(gossamer completion bash)
    zsh:   source <(gossamer completion zsh)
    fish:  gossamer completion fish > ~/.config/fish/completions/gossamer.fish
    """
    cls = get_completion_class(shell)
    assert cls is not None, shell  # click registers all three
    root = ctx.find_root().command
    click.echo(cls(root, {}, PROG, COMPLETE_VAR).source(), nl=False)  # as click prints it
