"""The hook reference of "Writing a runtime plugin", generated from the hookspec docstrings.

The document holds the reference between two marker lines; regenerate it with::

    python -m nanoclaw_runtimes_core.testing.hookdocs docs/writing-a-runtime.md

and a meta-test fails when the document and the docstrings disagree.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path

from .. import hookspecs

BEGIN = "<!-- hook reference: generated from nanoclaw_runtimes_core/hookspecs.py -->"
END = "<!-- end of hook reference -->"

_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")


def hook_specs() -> dict[str, Callable[..., object]]:
    """Every hookspec function, in the order the module defines them."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    found = [
        (fn.__code__.co_firstlineno, name, fn)
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, marker)
    ]
    return {name: fn for _, name, fn in sorted(found)}


def _markdown(docstring: str) -> str:
    """Sphinx roles and double backquotes as plain Markdown code spans."""
    text = inspect.cleandoc(docstring)
    # As Sphinx shows them: `~a.b.C` as `C`, `a.b.c` in full.
    text = _ROLE.sub(
        lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text
    )
    return text.replace("``", "`")


def _signature(name: str, fn: Callable[..., object]) -> str:
    sig = inspect.signature(fn)
    params = ", ".join(
        p.name if p.annotation is inspect.Parameter.empty else f"{p.name}: {p.annotation}"
        for p in sig.parameters.values()
    )
    returns = "" if sig.return_annotation is inspect.Signature.empty else sig.return_annotation
    return f"{name}({params})" + (f" -> {returns}" if returns else "")


def render_reference() -> str:
    """The reference section: one heading per hook, then its docstring."""
    parts = [BEGIN, ""]
    for name, fn in hook_specs().items():
        parts += [f"### `{_signature(name, fn)}`", "", _markdown(fn.__doc__ or ""), ""]
    parts.append(END)
    return "\n".join(parts)


def current_reference(document: str) -> str | None:
    """The reference section as the document has it, or None without the markers."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        return None
    return document[start : end + len(END)]


def update(path: Path) -> bool:
    """Rewrite the reference section of ``path``; True when it changed."""
    document = path.read_text(encoding="utf-8")
    old = current_reference(document)
    if old is None:
        raise SystemExit(f"{path}: no hook reference markers ({BEGIN!r} ... {END!r})")
    new = render_reference()
    if old == new:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(document.replace(old, new), encoding="utf-8")
    tmp.replace(path)
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m nanoclaw_runtimes_core.testing.hookdocs DOC.md", file=sys.stderr)
        return 2
    changed = update(Path(args[0]))
    print(f"{args[0]}: {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
