"""The README's two fresh-machine commands are exactly what .ci/run runs."""
from __future__ import annotations

import re

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    install, test = blocks[0].strip(), blocks[1].strip()
    ci_lines = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    assert install in ci_lines and test in ci_lines
    assert ci_lines.index(install) < ci_lines.index(test)


def test_layout_names_the_one_graph_builder_and_session_factory():
    readme = (REPO_ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    assert "build_deploy_graph()" in layout and "ort_session()" in layout and "ModelDescriptor" in layout
