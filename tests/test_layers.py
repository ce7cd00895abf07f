"""The layering rules, checked by reading the source (no import is executed).

Layers, bottom up:

* the platform: the package ``medstudio`` (accounts, audit, jobs, datasets, annotation, backends,
  handoffs, inference...);
* the pipeline stages: the top-level packages ``curation``, ``preferences``, ``training`` (each with
  sub-apps: ``curation.studio`` is still the curation stage);
* the ML cores: every ``*/pipeline/`` package, run in processes without Django.

Rules:

1. the platform imports no stage;
2. a stage imports no other stage (it talks to them through the platform's ``handoffs``);
3. an ML core imports no Django (nor a Django-dependent library) and no Django app module: of
   first-party code it may import ML cores (its own stage's: rule 2 forbids the others') and the few
   platform modules that are plain Python (``PURE_PLATFORM_MODULES``);
4. no ``apps.get_model(...)`` outside migrations (import the model; the string hides the arrow).

Every import counts: module level and inside functions, ``import x``, ``from x import y``, relative
imports (resolved), and ``importlib.import_module("...")`` / ``apps.get_model("app", "Model")`` with
literal strings. Migrations are left out of every check (historical models use ``apps.get_model``
by design). String references that are not imports (``include("curation.urls")`` in the root
URLconf, INSTALLED_APPS) are the project's composition root and are not checked.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = "medstudio"
STAGES = ("curation", "preferences", "training")
PACKAGES = (PLATFORM, *STAGES)

# Third-party packages that are Django or import it on import: an ML core imports none of them.
DJANGO_ROOTS = frozenset({"django", "rest_framework", "django_htmx", "drf_spectacular", "template_partials"})

# The platform modules an ML core may import (a name covers its submodules). Checked by reading
# every medstudio module's imports: these are plain Python, with no Django import, directly or
# through what they import (test_pure_platform_modules_are_django_free below keeps them so, following
# their imports and their packages' __init__): the dataset converters and text helpers, and the
# inference clients (chat, embeddings, causal-LM scoring; openai/torch/vllm imported lazily). Every
# other medstudio module is allowed nowhere in an ML core: most are Django app modules (models,
# services, selectors, views...) or import one. A few others are Django-free today but are parts of
# Django apps (annotation.agreement/.judges/.questions/.sampling, handoffs.lineage/.scorers,
# jobs.registry, settings): add one here only if an ML core needs it, after checking it. Importing
# these runs the __init__ of ``medstudio`` (which makes the Celery app: ``celery`` only, Django
# settings are read lazily) and of ``medstudio.datasets`` (empty); the test checks those too.
PURE_PLATFORM_MODULES = frozenset({
    "medstudio.datasets.convert",
    "medstudio.datasets.text",
    "medstudio.datasets.formats",
    "medstudio.inference",
})


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # absolute dotted name
    kind: str  # "import", "from", "import_module", "get_model"
    in_function: bool
    type_checking: bool = False


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    source: str
    target: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.source} -> {self.target}  [{self.rule}]"


# --- reading one module ----------------------------------------------------------------------------


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """`from ..x import y` inside `module` -> the absolute name of `..x`."""
    if level == 0:
        return name or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]  # a module's relative imports start from its package
    if level > 1:
        parts = parts[: len(parts) - (level - 1)] if level - 1 <= len(parts) else []
    base = ".".join(parts)
    if name:
        return f"{base}.{name}" if base else name
    return base


def _literal_str(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _call_name(func: ast.AST) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _is_type_checking(test: ast.AST) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Walker(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, app_labels: dict[str, str], known_modules: set[str]):
        self.module = module
        self.is_package = is_package
        self.app_labels = app_labels
        self.known_modules = known_modules
        self.imports: list[Import] = []
        self.get_model_calls: list[tuple[int, str]] = []
        self._depth = 0  # inside a function (or lambda)
        self._type_checking = 0

    def _add(self, line: int, target: str, kind: str) -> None:
        if target:
            self.imports.append(Import(line, target, kind, self._depth > 0, self._type_checking > 0))

    def _function(self, node):
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._type_checking += 1
            for child in node.body:
                self.visit(child)
            self._type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node.lineno, alias.name, "import")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve_relative(self.module, self.is_package, node.level, node.module)
        for alias in node.names:
            # `from pkg import mod` imports the module pkg.mod when there is one (first-party code
            # only: that is where the rules look inside packages).
            sub = f"{base}.{alias.name}" if base else alias.name
            self._add(node.lineno, sub if sub in self.known_modules else base, "from")

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node.func)
        if name in {"import_module", "__import__"}:
            target = _literal_str(node.args[0]) if node.args else None
            if target is not None:
                if target.startswith("."):
                    package = _literal_str(node.args[1]) if len(node.args) > 1 else None
                    package = package or next((_literal_str(k.value) for k in node.keywords
                                               if k.arg == "package"), None)
                    if package:
                        level = len(target) - len(target.lstrip("."))
                        target = _resolve_relative(package, True, level, target.lstrip(".") or None)
                    else:
                        target = None
                if target:
                    self._add(node.lineno, target, "import_module")
        elif name == "get_model":
            args = [_literal_str(a) for a in node.args]
            label = model = None
            if len(args) >= 2 and args[0] and args[1]:
                label, model = args[0], args[1]
            elif len(args) == 1 and args[0] and "." in args[0]:
                label, model = args[0].split(".", 1)
            shown = f"{label}.{model}" if label else "<dynamic>"
            self.get_model_calls.append((node.lineno, shown))
            if label:
                app = self.app_labels.get(label, label)
                self._add(node.lineno, f"{app}.models", "get_model")
        self.generic_visit(node)


def collect_imports(source: str, module: str, *, is_package: bool = False,
                    app_labels: dict[str, str] | None = None,
                    known_modules: set[str] | None = None) -> tuple[list[Import], list[tuple[int, str]]]:
    """Every import of one module's source, and its get_model calls as (line, "label.Model")."""
    walker = _Walker(module, is_package, app_labels or {}, known_modules or set())
    walker.visit(ast.parse(source))
    return walker.imports, walker.get_model_calls


# --- the rules -------------------------------------------------------------------------------------


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def is_ml_core(module: str) -> bool:
    """`curation.pipeline`, `curation.pipeline.rules`, ... (any package named `pipeline`)."""
    return "pipeline" in module.split(".")[1:]


def _is_first_party(name: str) -> bool:
    return _top(name) in PACKAGES


def _allowed_in_ml_core(target: str) -> bool:
    if _is_first_party(target):
        if is_ml_core(target):
            return True
        # the pure modules, and the packages that hold them (importing them runs their __init__)
        return any(_within(target, pure) or pure.startswith(target + ".") for pure in PURE_PLATFORM_MODULES)
    return True


def check_module(path: str, module: str, imports: list[Import],
                 get_model_calls: list[tuple[int, str]]) -> list[Violation]:
    """The rules for one (non-migration) module."""
    found: list[Violation] = []
    layer = _top(module)
    seen = set()
    for imp in imports:
        if (imp.line, imp.target) in seen:  # `from x import a, b`: one arrow
            continue
        seen.add((imp.line, imp.target))
        target, top = imp.target, _top(imp.target)
        arrow = (path, imp.line, module, target)
        if layer == PLATFORM and top in STAGES:
            found.append(Violation(*arrow, "the platform imports a stage"))
        if layer in STAGES and top in STAGES and top != layer:
            found.append(Violation(*arrow, "a stage imports another stage"))
        if is_ml_core(module):
            if top in DJANGO_ROOTS:
                found.append(Violation(*arrow, "an ML core imports Django"))
            elif not _allowed_in_ml_core(target):
                found.append(Violation(*arrow, "an ML core imports a Django app module"))
    for line, model in get_model_calls:
        found.append(Violation(path, line, module, model, "apps.get_model outside migrations"))
    return found


# --- the tree --------------------------------------------------------------------------------------


def _module_name(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def source_files() -> list[Path]:
    files = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.relative_to(ROOT).parts:
                continue
            files.append(path)
    return files


def app_labels() -> dict[str, str]:
    """App label -> app module, read from every apps.py (`name = ...`, `label = ...`)."""
    labels: dict[str, str] = {}
    for path in source_files():
        if path.name != "apps.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            values = {t.id: _literal_str(stmt.value) for stmt in node.body if isinstance(stmt, ast.Assign)
                      for t in stmt.targets if isinstance(t, ast.Name)}
            if values.get("name"):
                labels[values.get("label") or values["name"].rsplit(".", 1)[-1]] = values["name"]
    return labels


def scan_tree() -> tuple[dict[str, list[Import]], list[Violation]]:
    files = source_files()
    known = {_module_name(p)[0] for p in files}
    labels = app_labels()
    imports_of: dict[str, list[Import]] = {}
    violations: list[Violation] = []
    for path in files:
        module, is_package = _module_name(path)
        imports, get_models = collect_imports(path.read_text(encoding="utf-8"), module, is_package=is_package,
                                              app_labels=labels, known_modules=known)
        imports_of[module] = imports
        violations += check_module(str(path.relative_to(ROOT)), module, imports, get_models)
    return imports_of, violations


@pytest.fixture(scope="module")
def tree():
    return scan_tree()


def _report(violations: list[Violation]) -> str:
    return "\n".join(str(v) for v in sorted(violations, key=lambda v: (v.path, v.line)))


def test_walk_reads_every_package():
    modules = {_module_name(p)[0] for p in source_files()}
    for expected in ("medstudio.handoffs.models", "curation.studio.models", "preferences.pipeline.builders",
                     "training.pipeline.train", "training.evaluation.services"):
        assert expected in modules
    assert not any(".migrations" in m for m in modules)


@pytest.mark.parametrize("rule", [
    "the platform imports a stage",
    "a stage imports another stage",
    "an ML core imports Django",
    "an ML core imports a Django app module",
    "apps.get_model outside migrations",
])
def test_layers(tree, rule):
    _, violations = tree
    broken = [v for v in violations if v.rule == rule]
    assert not broken, f"{rule}:\n{_report(broken)}"


def test_pure_platform_modules_are_django_free(tree):
    """What an ML core may import from the platform really is plain Python: no Django import in
    it (at any depth, in functions too), and its first-party imports, and its packages' __init__,
    are such modules as well."""
    imports_of, _ = tree
    pure = {m for m in imports_of if any(_within(m, p) for p in PURE_PLATFORM_MODULES)}
    for name in PURE_PLATFORM_MODULES:
        assert name in pure, f"{name} is not in the tree any more"
    parents = {".".join(m.split(".")[:i]) for m in pure for i in range(1, m.count(".") + 1)} - pure
    # medstudio/__init__ makes the Celery app; its one function-level import (jobs.services) runs in
    # the worker's worker_ready signal only, never on import.
    init_only = parents | {"medstudio.celery"}
    allowed = pure | init_only

    def known(name: str) -> str:
        while name and name not in imports_of:
            name = name.rpartition(".")[0]
        return name

    problems = []
    for module in sorted(allowed):
        for imp in imports_of[module]:
            if module in init_only and (imp.in_function or imp.type_checking):
                continue
            if _top(imp.target) in DJANGO_ROOTS:
                problems.append(f"{module}:{imp.line} -> {imp.target}")
            elif _is_first_party(imp.target) and known(imp.target) not in allowed:
                problems.append(f"{module}:{imp.line} -> {imp.target} (not a pure module)")
    assert not problems, "\n".join(problems)


# --- the walker itself, on planted sources ---------------------------------------------------------

PLANTED = '''
import os
from django.db import models
from . import rules
from ..studio import services as studio_services

def later():
    import preferences.models
    from training.pipeline.specs import Spec
    from importlib import import_module
    import_module("training.services")
    import_module(".conf", package="preferences")
    from django.apps import apps
    return apps.get_model("studio", "Selection")
'''


def test_walker_collects_every_kind_of_import():
    imports, get_models = collect_imports(
        PLANTED, "curation.pipeline.planted", app_labels={"studio": "curation.studio"},
        known_modules={"curation.pipeline.rules"})
    got = {(i.line, i.target, i.kind, i.in_function) for i in imports}
    assert (2, "os", "import", False) in got
    assert (3, "django.db", "from", False) in got
    assert (4, "curation.pipeline.rules", "from", False) in got  # relative, resolved to the module
    assert (5, "curation.studio", "from", False) in got  # two levels up
    assert (8, "preferences.models", "import", True) in got  # inside a function
    assert (9, "training.pipeline.specs", "from", True) in got
    assert (11, "training.services", "import_module", True) in got
    assert (12, "preferences.conf", "import_module", True) in got
    assert (14, "curation.studio.models", "get_model", True) in got
    assert get_models == [(14, "studio.Selection")]


def test_walker_finds_planted_violations():
    imports, get_models = collect_imports(
        PLANTED, "curation.pipeline.planted", app_labels={"studio": "curation.studio"},
        known_modules={"curation.pipeline.rules"})
    found = {(v.line, v.target, v.rule) for v in check_module("planted.py", "curation.pipeline.planted",
                                                                 imports, get_models)}
    assert (3, "django.db", "an ML core imports Django") in found
    assert (13, "django.apps", "an ML core imports Django") in found
    assert (5, "curation.studio", "an ML core imports a Django app module") in found
    assert (8, "preferences.models", "a stage imports another stage") in found
    assert (9, "training.pipeline.specs", "a stage imports another stage") in found
    assert (11, "training.services", "a stage imports another stage") in found
    assert (12, "preferences.conf", "a stage imports another stage") in found
    assert (14, "studio.Selection", "apps.get_model outside migrations") in found
    # allowed: the stdlib, its own ML core
    assert not any(line in (2, 4) for line, _, _ in found)


def test_walker_platform_and_pure_modules():
    source = ("from curation.studio.models import Selection\n"
              "from medstudio.datasets.convert import to_flat_row\n"
              "from medstudio.datasets import text\n"
              "from medstudio.handoffs.models import Mixture\n"
              "from medstudio.inference.chat import ChatError\n")
    known = {"medstudio.datasets.text", "medstudio.inference.chat"}
    imports, _ = collect_imports(source, "medstudio.handoffs.lineage", known_modules=known)
    found = [(v.line, v.rule) for v in check_module("x.py", "medstudio.handoffs.lineage", imports, [])]
    assert found == [(1, "the platform imports a stage")]
    imports, _ = collect_imports(source, "training.pipeline.train", known_modules=known)
    found = [(v.line, v.rule) for v in check_module("x.py", "training.pipeline.train", imports, [])]
    assert found == [(1, "a stage imports another stage"), (1, "an ML core imports a Django app module"),
                     (4, "an ML core imports a Django app module")]
    # sub-apps of one stage are one stage
    imports, _ = collect_imports("from curation.modelscorers import scorers\n", "curation.studio.services")
    assert check_module("x.py", "curation.studio.services", imports, []) == []
