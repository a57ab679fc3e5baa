"""``gossamer completion bash|zsh|fish``: click's own script, and it completes for real.

The script printed must be byte for byte what click emits for ``_GOSSAMER_COMPLETE=
<shell>_source gossamer`` (so its protocol with the callback matches the installed
click), and a real bash that sources it must complete ``gossamer ge`` to ``get``: the
script calls the console script back, which lists the lazily loaded subcommands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GOSSAMER = Path(sys.executable).parent / "gossamer"


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GOSSAMER", "_GOSSAMER"))}
    return subprocess.run([str(GOSSAMER), *args], capture_output=True, text=True, timeout=60,
                          env={**clean, **env}, check=False)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_script_is_what_click_emits(shell: str) -> None:
    ours = _run(["completion", shell])
    clicks = _run([], _GOSSAMER_COMPLETE=f"{shell}_source")
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == clicks.stdout
    assert "_GOSSAMER_COMPLETE" in ours.stdout


def test_an_unknown_shell_is_one_line_and_exit_2() -> None:
    result = _run(["completion", "tcsh"])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "'tcsh' is not one of" in result.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_ge_to_get() -> None:
    # The function the script defines is called as bash's `complete -F` would: with the
    # command's path in $1, the words in COMP_WORDS, the cursor's word in COMP_CWORD.
    script = (f'source <("{GOSSAMER}" completion bash)\n'
              f'COMP_WORDS=("{GOSSAMER}" @WORDS@); COMP_CWORD=@CWORD@\n'
              f'_gossamer_completion "{GOSSAMER}"\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')

    def complete(words: str, cword: int) -> list[str]:
        source = script.replace("@WORDS@", words).replace("@CWORD@", str(cword))
        result = subprocess.run(["bash", "-c", source], capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("ge", 1) == ["get"]
    assert {"completion", "config", "check"} <= set(complete("c", 1))
    assert complete("completion f", 2) == ["fish"]
