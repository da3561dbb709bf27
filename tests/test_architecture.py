"""The import graph holds to the module map (docs/internals/architecture.md): who may import whom.

The contracts live in ``.importlinter``; this runs them with import-linter on this checkout's
code (the repository first on ``PYTHONPATH``, so an installed copy of fleet elsewhere is not
what gets checked) and fails with import-linter's own report, which names each import that
breaks a contract and the chain that leads to it.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys

from tests.conftest import REPO

CONFIG = REPO / ".importlinter"


def test_the_import_graph_keeps_every_contract_of_the_module_map() -> None:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    contracts = [s for s in parser.sections() if s.startswith("importlinter:contract:")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    done = subprocess.run(
        [*argv, str(CONFIG), "--no-cache"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"the import graph breaks the module map:\n{report}"
    # A config that loaded no contract (a renamed section, a typo) would pass vacuously.
    assert f"Contracts: {len(contracts)} kept, 0 broken." in report, report
