"""Package structure of common/: no import cycles, infrastructure never imports a method, methods
never import each other."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

COMMON = Path(__file__).resolve().parent.parent / "common"


def _imported_modules(path: Path) -> set[str]:
    """``common.*`` modules imported by one source file (relative imports resolved)."""
    package = ".".join(path.relative_to(COMMON.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXPORTS" for t in node.targets):
            found |= set(ast.literal_eval(node.value).values())  # lazy re-exports (common.lazy) are imports too
    return {m for m in found if m.split(".")[0] == "common"}


def _unit(module: str) -> str | None:
    """The structural unit of a module: ``common.<package>``, or ``common.methods.<method>``."""
    parts = module.split(".")
    if len(parts) < 2 or not (COMMON / parts[1]).is_dir():
        return None
    if parts[1] == "methods" and len(parts) > 2 and (COMMON / "methods" / parts[2]).is_dir():
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def unit_graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for f in COMMON.rglob("*.py"):
        src = _unit(".".join(f.relative_to(COMMON.parent).with_suffix("").parts))
        if src is None:
            continue
        for m in _imported_modules(f):
            dst = _unit(m)
            if dst and dst != src:
                edges[src].add(dst)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_no_import_cycle_between_packages_or_methods():
    cycle = find_cycle(unit_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_shared_infrastructure_never_imports_a_method():
    offenders = {src: sorted(d for d in dsts if d.startswith("common.methods"))
                 for src, dsts in unit_graph().items() if not src.startswith("common.methods")}
    assert not {k: v for k, v in offenders.items() if v}


def test_methods_do_not_import_each_other():
    graph = unit_graph()
    for src, dsts in graph.items():
        if src.startswith("common.methods."):
            assert not [d for d in dsts if d.startswith("common.methods.")], f"{src} imports {dsts}"


def test_every_method_folder_has_its_parts():
    methods = {p.name for p in (COMMON / "methods").iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert methods == {"subfore", "medcontext", "anatomask", "ctfm"}
    for m in methods:
        files = {f.stem for f in (COMMON / "methods" / m).glob("*.py")}
        assert {"__init__", "model", "loss"} <= files, (m, files)


BUNDLE_METHOD = {
    "btcv_finetune": None, "brats_finetune": None, "subfore_pretrain": "subfore", "medcontext_unetr": "medcontext",
    "anatomask_pretrain": "anatomask", "ctfm_pretrain": "ctfm", "ctfm_segmentation": None, "ctfm_classification": "ctfm",
    "ctfm_retrieval": "ctfm",
}


def test_export_vendors_only_the_bundles_own_method():
    import json

    from common.zoo.export import PACKAGE_ROOT, used_modules

    bundles = COMMON.parent / "bundles"
    assert set(BUNDLE_METHOD) == {d.name for d in bundles.iterdir() if (d / "configs").is_dir()}
    for bundle, method in BUNDLE_METHOD.items():
        configs = [json.loads(p.read_text()) for p in (bundles / bundle / "configs").glob("*.json") if not p.name.startswith("datalist")]
        files = {f.relative_to(PACKAGE_ROOT).as_posix() for f in used_modules(configs)}
        methods = {f.split("/")[1] for f in files if f.startswith("methods/") and f.count("/") == 2}
        assert methods == ({method} if method else set()), (bundle, methods)
        assert not any(f.startswith(("dev/", "experiments/", "zoo/")) for f in files), bundle


def test_the_runtime_never_imports_the_development_tools():
    """``common.dev`` (the config generator) is build tooling: no other package of ``common`` imports it."""
    importers = sorted(src for src, dsts in unit_graph().items() if src != "common.dev" and "common.dev" in dsts)
    assert importers == []


def test_a_lazily_exported_name_brings_only_its_module():
    from common.zoo.export import PACKAGE_ROOT, used_modules

    files = {f.relative_to(PACKAGE_ROOT).as_posix() for f in used_modules([{"handler": {"_target_": "common.handlers.ValidationWithFinal"}}])}
    assert "handlers/validation.py" in files and "handlers/__init__.py" in files and "lazy.py" in files
    assert "handlers/segmentation_report.py" not in files and "handlers/export.py" not in files


def test_lazily_exported_names_do_not_shadow_submodules():
    """Importing ``pkg.name`` binds the submodule as ``pkg.name``, which would hide an exported ``name``."""
    from common.zoo.export import lazy_exports

    for init in COMMON.rglob("__init__.py"):
        submodules = {p.stem for p in init.parent.glob("*.py")} | {p.name for p in init.parent.iterdir() if p.is_dir()}
        clash = submodules & set(lazy_exports(init))
        assert not clash, f"{init}: {sorted(clash)}"
        for name, module in lazy_exports(init).items():  # every entry resolves
            assert (COMMON.parent / (module.replace(".", "/") + ".py")).is_file() or (COMMON.parent / module.replace(".", "/") / "__init__.py").is_file(), (init, name, module)
