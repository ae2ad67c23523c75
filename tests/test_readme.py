"""The README's two fresh-machine commands are exactly what .ci/run runs, and every ``esr`` command in the
README's and docs/*.md's code blocks parses against the CLI (an unknown flag fails)."""
from __future__ import annotations

import re
import shlex
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


FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}
"""Fenced blocks whose lines are read as shell commands; in unlabelled blocks (which also hold diagrams and
file layouts) only lines that start with ``esr``."""
SEPARATORS = {";", "&&", "||", "|", "&", "(", ")"}
PREFIXES = {"do", "then", "else", "time", "nohup", "srun", "sudo", "exec", "!"}
"""Words that may stand before ``esr`` in a command (besides ``VAR=value`` assignments)."""


def shell_lines(text: str) -> list[str]:
    """The command lines of the code blocks of a Markdown ``text`` (see :data:`SHELL_BLOCKS`), ``\\``-continuations
    joined."""
    lines, block, pending = [], None, ""
    for raw in text.splitlines():
        fence = FENCE.match(raw)
        if fence:
            block = fence.group(2).lower() if block is None else None
            continue
        if block is None or (block not in SHELL_BLOCKS and (block or not (pending or raw.strip().startswith("esr ")))):
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        lines.append(line)
    return lines


def esr_commands(line: str) -> list[list[str]]:
    """The ``esr`` invocations in one shell line, each as its argument list (without ``esr``): commands split at
    ``;``, ``&&``, ``||``, ``|``, ``&``; ``esr`` after ``VAR=value``, ``do``, ``srun``, ... or ``-m`` (``python -m
    esr``, ``torchrun ... -m esr``); redirections dropped; comments ignored."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    segments, current, redirect = [], [], False
    for token in lexer:
        if token in SEPARATORS:
            segments.append(current)
            current = []
        elif set(token) <= set("<>&|;()") and ("<" in token or ">" in token):
            redirect = True
        elif redirect:
            redirect = False
        else:
            current.append(token)
    segments.append(current)
    found = []
    for words in segments:
        for index, word in enumerate(words):
            if word == "esr" and (index == 0 or words[index - 1] == "-m"
                                  or all("=" in w or w in PREFIXES for w in words[:index])):
                found.append(words[index + 1:])
                break
    return found


def documented_commands() -> list[tuple[str, str, list[str] | str]]:
    """(file, line, arguments) of every ``esr`` command in README.md and docs/*.md (a string: why the line could
    not be read)."""
    found = []
    for path in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]:
        for line in shell_lines(path.read_text()):
            try:
                found += [(path.name, line, argv) for argv in esr_commands(line)]
            except ValueError as err:  # unbalanced quotes: a broken command line
                found.append((path.name, line, f"cannot be split into words ({err})"))
    return found


def test_the_command_extractor_reads_shell_forms():
    text = ("```bash\n"
            "python3 -m venv .venv && pip install . && esr upscale in/ -o out/  # a comment\n"
            "for i in 0 1; do CUDA_VISIBLE_DEVICES=$i esr upscale a/ -o b/ --shard $i/2 & done; wait\n"
            "torchrun --nproc_per_node 2 \\\n    -m esr train -opt x.yml --launcher pytorch\n"
            "esr models --json > models.jsonl\n"
            "```\n"
            "```python\nesr.upscale(image)\n```\n"
            "```\n(esr detectors, then stages)\nesr eval --data Set5\n```\n")
    commands = [argv for line in shell_lines(text) for argv in esr_commands(line)]
    assert commands == [["upscale", "in/", "-o", "out/"], ["upscale", "a/", "-o", "b/", "--shard", "$i/2"],
                        ["train", "-opt", "x.yml", "--launcher", "pytorch"], ["models", "--json"],
                        ["eval", "--data", "Set5"]]


def parse_error(argv: list[str], capsys) -> str | None:
    """argparse's complaint about ``esr ARGV`` (its last stderr line), or None when it parses."""
    from esr.cli import build_parser

    try:
        build_parser().parse_args(argv)
    except SystemExit as stop:
        if stop.code != 0:
            return capsys.readouterr().err.strip().splitlines()[-1]
    return None


def test_a_bad_flag_or_choice_is_reported(capsys):
    assert parse_error(["upscale", "in/", "-o", "out/", "-n", "rlfn_x4", "-s", "2", "-t", "256"], capsys) is None
    assert "unrecognized arguments: --bogus" in parse_error(["upscale", "in/", "-o", "out/", "--bogus"], capsys)
    assert "invalid choice" in parse_error(["upscale", "in/", "-o", "out/", "--ext", "gif"], capsys)
    assert "required" in parse_error(["upscale", "in/"], capsys)


def test_every_documented_command_parses(capsys):
    """Each ``esr`` command in a code block of README.md or docs/*.md is accepted by the CLI's parser (an
    unknown flag, a wrong choice or a missing required option fails here, naming the file and the line)."""
    commands = documented_commands()
    assert any(argv[:1] == ["upscale"] for _, _, argv in commands)  # the extractor found the README's commands
    failures = [f"{name}: {line}: {argv}" for name, line, argv in commands if isinstance(argv, str)]
    for name, line, argv in [c for c in commands if not isinstance(c[2], str)]:
        error = parse_error(argv, capsys)
        if error is not None:
            failures.append(f"{name}: {line}: {error}")
    assert not failures, "\n".join(failures)
