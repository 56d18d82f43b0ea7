"""Type hints on the runner's public functions (issue 24).

Every public (no leading underscore) module-level function, and every
public method of a public class, in runner/kpc/*.py annotates each of its
parameters (self and cls aside) and its return. Read with ast: nothing is
imported or run. The modules use `from __future__ import annotations`, so
a hint is never evaluated (kpc runs on Python 3.9: `str | None` is fine).
mypy (Debian package mypy) checks the hints against the code by hand
(runner/mypy.ini); it is not yet clean, so selftest does not run it.
"""

import ast
import glob
import os

from kpc import paths

KPC = os.path.join(paths.RUNNER, "kpc")


def unannotated(source, filename="<source>"):
    """['file:line name: what is missing'] for the public functions of SOURCE."""
    out = []

    def check(fn, owner):
        if fn.name.startswith("_"):
            return
        args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
        if owner and args and args[0].arg in ("self", "cls") and not any(
                isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list):
            args = args[1:]
        args += [a for a in (fn.args.vararg, fn.args.kwarg) if a is not None]
        missing = [a.arg for a in args if a.annotation is None]
        if fn.returns is None:
            missing.append("return")
        if missing:
            out.append(f"{filename}:{fn.lineno} {owner + '.' if owner else ''}{fn.name}: {', '.join(missing)}")

    def walk(body, owner=""):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                check(node, owner)
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_") and not owner:
                walk(node.body, node.name)
            elif isinstance(node, (ast.If, ast.Try)):   # `if TYPE_CHECKING:`, try/except ImportError
                walk(node.body, owner)
    walk(ast.parse(source, filename).body)
    return out


def modules():
    return sorted(glob.glob(os.path.join(KPC, "*.py")))


def test_the_check_finds_a_missing_hint():
    """The check itself can fail: each kind of omission is found, and a
    private function, a nested one, self and a fully hinted one are not."""
    src = ("def f(a, b: int) -> int: pass\n"
           "def g(a: int): pass\n"
           "def h(*args: int, **kw) -> None: pass\n"
           "def _private(a): pass\n"
           "def ok(a: int, *, b: str = '') -> None:\n"
           "    def inner(x): pass\n"
           "class C:\n"
           "    def m(self, x) -> None: pass\n"
           "    def n(self) -> int: return 1\n"
           "    @staticmethod\n"
           "    def s(x: int) -> int: return x\n"
           "class _Hidden:\n"
           "    def m(self, x): pass\n")
    assert unannotated(src, "x.py") == ["x.py:1 f: a", "x.py:2 g: return", "x.py:3 h: kw", "x.py:8 C.m: x"]


def test_every_public_function_of_the_runner_has_type_hints():
    assert modules(), KPC
    missing = []
    for path in modules():
        with open(path, encoding="utf-8") as f:
            missing += unannotated(f.read(), os.path.relpath(path, paths.ROOT))
    assert not missing, f"{len(missing)} public functions without full type hints:\n" + "\n".join(missing[:60])


def test_every_module_postpones_its_hints():
    """`from __future__ import annotations` in every module with a hint:
    a hint like `str | None` is never evaluated on Python 3.9."""
    late = []
    for path in modules():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        hinted = any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and (n.returns or any(
            a.annotation for a in n.args.args + n.args.kwonlyargs)) for n in ast.walk(tree))
        future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
                     any(a.name == "annotations" for a in n.names) for n in tree.body)
        if hinted and not future:
            late.append(os.path.basename(path))
    assert not late, f"hints without `from __future__ import annotations`: {', '.join(late)}"
