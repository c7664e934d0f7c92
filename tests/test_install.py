"""The README's install lines work as written, in a fresh virtual environment.

rtreplay is not on PyPI yet, so the README gives two ways to install it into a user's
project: from a clone's path, and from a Git URL. Each is run here exactly as the README
prints it, with only the placeholder path or URL swapped for this checkout, and the
installed package is then used as a user would (the console script, the pytest plugin,
the openai extra). They download from PyPI, so they are in the slow set.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from .conftest import REPO, timeout

README = (REPO / "README.md").read_text()
_CONSOLE = re.compile(r"^```console\n(.*?)^```", re.S | re.M)


def install_line(marker: str) -> str:
    """The README's ``pip install`` line that contains ``marker``."""
    lines = [ln for block in _CONSOLE.findall(README) for ln in block.splitlines()]
    return next(ln for ln in lines if ln.startswith("pip install ") and marker in ln)


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout(600), check=False)
    assert done.returncode == 0, f"{shlex.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def use_it(env: Path, cwd: Path) -> None:
    """What a user does first: the CLI, the plugin's fixture, the openai extra."""
    bin_dir = env / "bin"
    assert "serve" in run([str(bin_dir / "rtreplay"), "--help"], cwd)
    run([str(bin_dir / "python"), "-c", "import openai, rtreplay, pytest_rtreplay"], cwd)
    fixtures = run([str(bin_dir / "python"), "-m", "pytest", "--fixtures", "-p", "no:cacheprovider"], cwd)
    assert "realtime_mock" in fixtures


def fresh_env(where: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    return where


@pytest.mark.slow
def test_the_readme_path_install_line_works(tmp_path: Path) -> None:
    line = install_line("/path/to/rtreplay")
    env = fresh_env(tmp_path / "env")
    args = shlex.split(line.replace("/path/to/rtreplay", str(REPO)))
    run([str(env / "bin" / "python"), "-m", *args], tmp_path)
    use_it(env, tmp_path)


@pytest.mark.slow
def test_the_readme_git_install_line_works(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a Git checkout of rtreplay (this is not one)")
    line = install_line("git+")
    url = re.search(r"git\+\S+?(?=')", line)
    assert url is not None, line
    # pip installs what the Git repository holds at HEAD, so the test does the same: a
    # bare clone of this checkout stands in for the hosted repository.
    origin = tmp_path / "origin.git"
    run(["git", "clone", "--quiet", "--bare", str(REPO), str(origin)], tmp_path)
    env = fresh_env(tmp_path / "env")
    # (file://localhost/...: pip 23, which a fresh venv brings, refuses file:///... here)
    args = shlex.split(line.replace(url.group(0), f"git+file://localhost{origin}"))
    run([str(env / "bin" / "python"), "-m", *args], tmp_path)
    use_it(env, tmp_path)


def test_the_install_lines_name_the_openai_extra() -> None:
    # The fast half of the check, in the default run: both lines exist and ask for the
    # extra that the README's copyable test needs.
    assert "[openai]" in install_line("/path/to/rtreplay")
    assert "rtreplay[openai] @ git+" in install_line("git+")


def test_the_license_pyproject_names_is_there() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'license = "MIT"' in pyproject
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")
