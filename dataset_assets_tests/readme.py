"""The README's marked shell blocks, and a copy of the repository to run them in as a new user.

A block runs in the test suite when the line before its ```bash fence is
`<!-- readme-test: NAME -->`; blocks without the marker (and every other section) are left alone.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"^<!-- readme-test: ([\w-]+) -->\n```bash\n(.*?)^```", re.M | re.S)
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", ".dataset_assets", "sample_images", "__pycache__", "*.egg-info", ".ruff_cache"
)


def readme_blocks(readme: Path = ROOT / "README.md") -> dict[str, str]:
    """Marked blocks by name, in README order."""
    return {name: body for name, body in MARKED.findall(readme.read_text())}


def venv() -> Path:
    return Path(sys.prefix)


def venv_is_current() -> bool:
    """Whether `scripts/setup.sh` would find nothing to install: then a README block that runs it
    (through `demo.sh`) leaves this environment as it is."""
    stamp = venv() / "installed-extras"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return stamp.is_file() and stamp.read_text().splitlines()[:1] == [digest]


def copy_repository(dest: Path) -> Path:
    """The repository's files, as a fresh clone has them, with this test run's `.venv`."""
    shutil.copytree(ROOT, dest, ignore=NOT_COPIED)
    (dest / ".venv").symlink_to(venv(), target_is_directory=True)
    return dest


def user_env(environ: dict[str, str]) -> dict[str, str]:
    """The environment of a new user's shell: none of the project's or Dagster's settings."""
    return {k: v for k, v in environ.items() if not k.startswith(("DAGSTER", "DATASET_ASSETS"))}


def run_in_shell(script: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`script` in bash, stopping at the first failing command, as a new user's shell runs it."""
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=user_env(dict(os.environ)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
