"""The file templates keep their line breaks: Jinja's trim_blocks (ffc's render setting) removes the newline
after a block tag, so a line of code that ends with ``{% endif %}`` runs into the next line unless a blank
line follows (the way the templates are written) or the tag is written ``+%}``. This joined a statement into
the comment before it in eval.py once (the answer filter was lost); this test finds that class of mistake
in every template instead of one generated file."""

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
ENDS_WITH_BLOCK = re.compile(r"\{%-?[^%]*[^+]%\}\s*$")  # a block tag ending the line (not the "+%}" form)
PURE_TAG = re.compile(r"^\s*(\{%.*?%\}\s*)+$")  # a line of block tags only: lstrip/trim remove it whole


def swallowed_newlines(text: str) -> list[int]:
    """Lines (1-based) of code or text that end with a block tag and run into the next line of output."""
    lines = text.splitlines()
    found = []
    for number, line in enumerate(lines, start=1):
        if line.lstrip().startswith("{") or not ENDS_WITH_BLOCK.search(line):
            continue  # Jinja-only lines (macro calls, tags) join on purpose
        following = next((later for later in lines[number:] if not PURE_TAG.match(later)), "")
        if following.strip():
            found.append(number)
    return found


def test_no_template_line_runs_into_the_next():
    problems = [
        f"{path.name}:{number}"
        for path in sorted(TEMPLATES.glob("*.j2"))
        for number in swallowed_newlines(path.read_text())
    ]
    assert not problems, f"a line ending in a block tag joins the next one (add a blank line or use +%}}): {problems}"


def test_the_check_finds_the_eval_py_mistake():
    broken = 'rows = load(...)  # prompts{% if multimodal %}, with media{% endif %}\nrows = [r for r in rows if r["answer"]]\n'
    assert swallowed_newlines(broken) == [1]
    assert swallowed_newlines(broken.replace("{% endif %}\n", "{% endif %}\n\n")) == []
    assert swallowed_newlines(broken.replace("{% endif %}", "{% endif +%}")) == []
