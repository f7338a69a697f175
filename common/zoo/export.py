"""Export a bundle as a standalone folder and zip that runs without this repository.

``python -m monai.bundle run`` puts a bundle's root folder on ``sys.path`` in ``ConfigWorkflow.run``,
from any working directory, but it evaluates a config's ``imports`` earlier, when it parses it. So
the export:

- copies the part of the ``common`` package the bundle uses into ``<bundle>/<name>_common/`` (e.g.
  ``btcv_finetune_common``), renamed so that two exported bundles in one process (a MONAI Label app
  serving both) never share, shadow or miss each other's code: Python imports a package name once
  per process, and each bundle vendors only the modules it uses. Which modules are "used" is
  computed, not guessed: every ``common`` name the configs use (``imports``, ``_target_`` paths, name
  chains of ``$`` expressions), then everything those modules import (``ast``), with their package
  ``__init__`` files. The copy is the source with its package name rewritten -- import statements,
  ``common.x`` names and strings that are exactly a module path, found with :mod:`tokenize` --
  nothing else (not ``foo.common.bar``, not a docstring or URL that mentions ``common.x``);
- rewrites the exported configs so that ``common`` is imported only when an expression runs: the
  ``$import common...`` entries leave ``imports``, and a name chain ``common.x.y.f`` in a ``$``
  expression (parsed: MONAI references set aside, the rest tokenized as Python) becomes
  ``pydoc.locate('<package>.x.y.f')``. ``_target_`` paths are already imported on use;
- fails, naming them, when the configs use a name the vendored copy does not provide (a missing
  module or a name no vendored module defines), so the gap is found at export time and not as
  ``'NoneType' object is not callable`` in a user's run.

``common.paths.locate_bundle`` recognises the vendored copy and makes the exported folder the
``bundle_root``.

Weights (``models/*.pt``, not training checkpoints) are copied; files over ``max_file_mb`` (25 MB,
the Model Zoo's limit) are left out of the folder and zip and listed in ``large_files.yml`` with
their sha256 (and ``url_prefix + name`` when given), as Model Zoo bundles do.

With ``monailabel=True`` (``--monailabel``) the exported metadata names the label map inference
writes, the way MONAI Label reads label names (see :mod:`common.zoo.monailabel`): for an app's
``model/`` folder, not a Model Zoo submission.

    python -m common.zoo.export bundles/btcv_finetune --output_dir dist [--url_prefix https://...] [--overwrite] [--monailabel]
"""

from __future__ import annotations

import ast
import io
import json
import logging
import re
import shutil
import sys
import tokenize
from pathlib import Path

import yaml
from monai.bundle.reference_resolver import ReferenceResolver

import common
from common.cli import command
from common.paths import GENERATED_KEY
from common.runs.identity import file_sha256
from common.runs.workflow import WORKFLOW_NAME
from common.zoo.monailabel import metadata_for_monailabel, written_label_names

logger = logging.getLogger(__name__)

PACKAGE_ROOT = Path(common.__file__).resolve().parent
_CONFIG_MODULE_RE = re.compile(r"\bcommon(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
MAX_FILE_MB = 25.0


class ExportError(ValueError):
    """The bundle cannot be exported as it is; the message names what is wrong."""


def _module_file(name: str, root: Path = PACKAGE_ROOT) -> Path | None:
    """Source file of module ``<package>.x.y`` under the package folder ``root`` (package ``__init__`` or module file), or None."""
    rel = Path(*name.split(".")[1:])
    for candidate in (root / rel / "__init__.py", root / rel.with_suffix(".py") if rel.parts else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "common"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "common":
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # submodules imported by name
    return found


def lazy_exports(init: Path) -> dict[str, str]:
    """A package's ``EXPORTS`` map (name -> defining module, :mod:`common.lazy`), read without importing it."""
    for node in ast.parse(init.read_text(), filename=str(init)).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXPORTS" for t in node.targets):
            return dict(ast.literal_eval(node.value))
    return {}


def config_module_names(config: object) -> set[str]:
    """Every ``common`` name a config uses: its ``imports`` entries, ``_target_`` paths and the name chains
    of its ``$`` expressions (parsed as :func:`lazy_common_imports` parses them: strings that merely
    mention ``common.x`` -- a message, a URL -- are not uses)."""
    named: set[str] = set()
    lazy_common_imports(config, "common", named)
    return named


def used_modules(configs: list[object]) -> list[Path]:
    """Source files of every ``common`` module the configs use (:func:`config_module_names`), closed over
    their imports and parents.

    A name a package exports lazily (``common.handlers.BestModelSaver``) brings only its defining
    module (``common.handlers.best_model``), not the rest of the package.
    """
    todo = {"common"}
    for config in configs:
        for dotted in config_module_names(config):
            parts = dotted.split(".")
            todo |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    files: set[Path] = set()
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        f = _module_file(name)
        if f is None:  # an attribute (class/function): the module a package exports it from, if lazy
            package, _, attr = name.rpartition(".")
            init = _module_file(package) if package else None
            if init is not None and init.name == "__init__.py":
                target = lazy_exports(init).get(attr)
                if target:
                    todo.add(target)
            continue
        files.add(f)
        parts = name.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))} | _imports_of(f)
    for f in list(files):  # data files shipped with a package (e.g. the metadata schema)
        files |= {p for p in f.parent.glob("*.json")}
    return sorted(files)


def vendored_package(bundle_name: str) -> str:
    """The vendored package's name for a bundle: ``btcv_finetune`` -> ``btcv_finetune_common``."""
    name = re.sub(r"\W", "_", bundle_name)
    return f"{'b_' if name[:1].isdigit() else ''}{name}_common"


def _renamed(dotted: str, package: str) -> str:
    return package + dotted[len("common"):]


#: a MONAI reference inside an expression (``@id``, ``@a#b``, ``@a::b``), built from MONAI's own markers
_REF_RE = re.compile(re.escape(ReferenceResolver.ref) + r"\w*(?:(?:#|" + re.escape(ReferenceResolver.sep) + r")\w*)*")


def _dotted_chains(code: str) -> list[tuple[tuple[int, int], tuple[int, int], str]]:
    """``(start, end, dotted name)`` of every ``common.x.y`` name chain in Python ``code`` (tokens, not text:
    never inside a string, never an attribute of something else such as ``net.common.weight``)."""
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type not in (tokenize.NL, tokenize.COMMENT)]
    chains = []
    for i, t in enumerate(tokens):
        if t.type != tokenize.NAME or t.string != "common" or (i and tokens[i - 1].string == "."):
            continue
        j, parts = i + 1, ["common"]
        while j + 1 < len(tokens) and tokens[j].string == "." and tokens[j + 1].type == tokenize.NAME:
            parts.append(tokens[j + 1].string)
            j += 2
        if len(parts) > 1:
            chains.append((t.start, tokens[j - 1].end, ".".join(parts)))
    return chains


def _replace_spans(code: str, edits: list[tuple[tuple[int, int], tuple[int, int], str]]) -> str:
    """``code`` with each ``(start, end, text)`` token span (tokenize's (row, col), a span may cross lines) replaced."""
    lines = code.splitlines(keepends=True) or [""]
    for (sr, sc), (er, ec), text in sorted(edits, reverse=True):
        if sr == er:
            lines[sr - 1] = lines[sr - 1][:sc] + text + lines[sr - 1][ec:]
        else:
            lines[sr - 1:er] = [lines[sr - 1][:sc] + text + lines[er - 1][ec:]]
    return "".join(lines)


def _lazy_expression(expr: str, package: str = "common", named: set[str] | None = None) -> str:
    """``$common.paths.locate_bundle(x)`` -> ``$pydoc.locate('<package>.paths.locate_bundle')(x)``.

    The expression is parsed, not searched: MONAI references (``@net``, ``@train#dataset``) are set
    aside, the rest is tokenized as Python, and only name chains that start with ``common`` are
    rewritten (``@net.common.weight`` and ``'https://x.org/common.html'`` stay as they are). Each
    rewritten path is added to ``named`` (checked against what was vendored). ``pydoc.locate``
    imports the module when the expression runs (not ``__import__``: MONAI treats any ``$`` string
    containing "import" as a candidate import statement and parses it raw).
    """
    refs: list[str] = []

    def mask(m: re.Match) -> str:
        refs.append(m.group(0))
        return f"__ref{len(refs) - 1}__"

    code = _REF_RE.sub(mask, expr[1:])
    try:
        chains = _dotted_chains(code)
    except (tokenize.TokenError, IndentationError, SyntaxError) as e:
        raise ValueError(f"config expression is not Python: {expr!r} ({e})") from e
    for *_, dotted in chains:
        if named is not None:
            named.add(_renamed(dotted, package))
    code = _replace_spans(code, [(a, b, f"pydoc.locate('{_renamed(d, package)}')") for a, b, d in chains])
    return "$" + re.sub(r"__ref(\d+)__", lambda m: refs[int(m.group(1))], code)


def lazy_common_imports(config: object, package: str = "common", named: set[str] | None = None) -> object:
    """A config (dict/list/str tree) whose ``common`` imports happen when expressions run, not at parse,
    from the vendored ``package``; ``_target_`` module paths are renamed to it too (exact paths only).
    Every renamed path, and every module an ``imports`` entry named, is added to ``named``."""
    if isinstance(config, dict):
        out = {}
        for k, v in config.items():
            if k == "imports" and isinstance(v, list):
                for entry in v:
                    m = re.match(r"^\$\s*(?:import|from)\s+(common(?:\.\w+)*)", str(entry))
                    if m and named is not None:
                        named.add(_renamed(m.group(1), package))
                v = [e for e in v if not re.match(r"^\$\s*(import|from)\s+common\b", str(e))] + ["$import pydoc"]
            elif k == "_target_" and isinstance(v, str) and _CONFIG_MODULE_RE.fullmatch(v):
                v = _renamed(v, package)
                if named is not None:
                    named.add(v)
            out[k] = lazy_common_imports(v, package, named)
        return out
    if isinstance(config, list):
        return [lazy_common_imports(v, package, named) for v in config]
    if isinstance(config, str) and config.startswith("$") and not re.match(r"^\$\s*(import|from)\s", config):
        return _lazy_expression(config, package, named)
    return config


def _defines(module: Path, name: str) -> bool:
    """Whether ``module`` binds ``name`` at its top level (def, class, assignment, import) or exports it lazily."""
    tree = ast.parse(module.read_text(), filename=str(module))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name.split(".")[0]) == name for a in node.names):
            return True
    return module.name == "__init__.py" and name in lazy_exports(module)


def unresolved(names: set[str], package_dir: Path, package: str) -> list[str]:
    """The dotted names (``<package>.x.y[.attr]``) that the vendored copy in ``package_dir`` cannot provide."""
    missing = []
    for dotted in sorted(names):
        parts = dotted.split(".")
        # the longest prefix that is a vendored module, then the first name after it must be defined there
        k, module = next(((k, f) for k in range(len(parts), 0, -1) if (f := _module_file(".".join(parts[:k]), package_dir))), (0, None))
        if module is None or (k < len(parts) and not _defines(module, parts[k])):
            missing.append(dotted)
    return missing


def _is_module_path_literal(token: str) -> bool:
    """Whether a string token's value is exactly ``common.x[.y...]`` (not prose, not a URL that contains it)."""
    try:
        value = ast.literal_eval(token)
    except (ValueError, SyntaxError):
        return False
    return isinstance(value, str) and _CONFIG_MODULE_RE.fullmatch(value) is not None and token.lstrip("rRuUbBfF")[0] in "'\""


def rename_package(source: str, package: str) -> str:
    """Python ``source`` of a ``common`` module with the package renamed to ``package``.

    ``from common.x import y`` -> ``from <package>.x import y``; ``import common`` -> ``import <package>
    as common`` (so the module's own ``common.x`` references and ``getattr(common, ...)`` keep working);
    ``import common.x as m`` -> ``import <package>.x as m``; a string that is exactly a module path
    (``"common.x.y"``: lazy ``EXPORTS`` maps, ``pydoc.locate`` arguments) is renamed; other strings
    (docstrings, URLs) and names such as ``foo.common.bar`` are left alone. A dotted import without
    ``as`` (``import common.x``) cannot be renamed faithfully and raises ``ValueError``.
    """
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
              if t.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)]
    edits: list[tuple[tuple[int, int], tuple[int, int], str]] = []
    for i, t in enumerate(tokens):
        if t.type == tokenize.NAME and t.string == "common" and i and tokens[i - 1].string in ("import", "from"):
            j = i + 1
            while j + 1 < len(tokens) and tokens[j].string == "." and tokens[j + 1].type == tokenize.NAME:
                j += 2  # the rest of the dotted name
            aliased = j < len(tokens) and tokens[j].string == "as"
            if tokens[i - 1].string == "from" or aliased:
                edits.append((t.start, t.end, package))
            elif j == i + 1:  # import common
                edits.append((t.start, t.end, f"{package} as common"))
            else:
                raise ValueError(f"line {t.start[0]}: 'import common.x' without 'as' cannot be vendored under another name; "
                                 "write 'from common import x' or 'import common.x as x'")
        elif t.type == tokenize.STRING and _is_module_path_literal(t.string):  # "common.x.y" exactly: a lazy export, a locate() argument
            edits.append((t.start, t.end, t.string.replace("common", package, 1)))
    return _replace_spans(source, edits)


def export_bundle(
    bundle_dir: str | Path, output_dir: str | Path, url_prefix: str = "", max_file_mb: float = MAX_FILE_MB, overwrite: bool = False,
    monailabel: bool = False,
) -> tuple[Path, Path]:
    """Write ``<output_dir>/<name>/`` and ``<output_dir>/<name>.zip``; return both paths.

    ``monailabel``: write metadata whose first output is the label map inference.json writes, so that
    MONAI Label names its labels by the written values (:func:`common.zoo.monailabel.metadata_for_monailabel`).
    """
    src = Path(bundle_dir).resolve()
    meta_path = src / "configs" / "metadata.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{src} is not a bundle: {meta_path} is missing")
    meta = json.loads(meta_path.read_text())
    name = meta.get("name") or src.name
    label_names = written_label_names(src) if monailabel else None  # before anything is written: a bundle without it stops here
    out = Path(output_dir).resolve()
    dest, zip_path = out / name, out / f"{name}.zip"
    if (dest.exists() or zip_path.exists()) and not overwrite:
        raise FileExistsError(f"{dest} or {zip_path} exists; pass --overwrite to replace them")
    if dest.exists():
        shutil.rmtree(dest)
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src / "configs", staging / "configs")
    if label_names is not None:
        (staging / "configs" / "metadata.json").write_text(json.dumps(metadata_for_monailabel(meta, label_names), indent=4) + "\n")
    for item in ("docs", "LICENSE"):
        if (src / item).is_dir():
            shutil.copytree(src / item, staging / item)
        elif (src / item).is_file():
            shutil.copy2(src / item, staging / item)

    large = []
    models = src / "models"
    for f in sorted(models.glob("*")) if models.is_dir() else []:
        if not f.is_file():
            continue  # checkpoints/ stays behind: training state, not a shareable model
        if f.stat().st_size > max_file_mb * 1024**2:
            large.append({"path": f"models/{f.name}", "url": f"{url_prefix.rstrip('/')}/{f.name}" if url_prefix else "", "hash_val": file_sha256(f), "hash_type": "sha256"})
            continue
        (staging / "models").mkdir(exist_ok=True)
        shutil.copy2(f, staging / "models" / f.name)
    if large:
        (staging / "large_files.yml").write_text(yaml.safe_dump({"large_files": large}, sort_keys=False))

    package = vendored_package(name)
    configs = []
    named: set[str] = set()
    for p in (staging / "configs").glob("*.json"):
        config = json.loads(p.read_text())
        if isinstance(config, dict):
            config.pop(GENERATED_KEY, None)  # names this repository's config sources, which are not shipped
        if not p.name.startswith("datalist"):
            configs.append(config)
            p.write_text(json.dumps(lazy_common_imports(config, package, named), indent=4) + "\n")
    files = used_modules(configs + [{"workflow": f"${WORKFLOW_NAME}"}])  # the workflow the docs' commands name ships too
    for doc in (staging / "docs").rglob("*.md") if (staging / "docs").is_dir() else []:  # exact module path, as in configs
        doc.write_text(doc.read_text().replace(f"--workflow_name {WORKFLOW_NAME}", f"--workflow_name {package}{WORKFLOW_NAME[len('common'):]}"))
    for f in files:
        target = staging / package / f.relative_to(PACKAGE_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix == ".py":
            target.write_text(rename_package(f.read_text(), package))
        else:
            shutil.copy2(f, target)
    modules = sorted(f.relative_to(PACKAGE_ROOT).as_posix() for f in files)
    available = sum(1 for _ in PACKAGE_ROOT.rglob("*.py"))
    manifest = {"bundle": name, "package": package, "renamed_from": "common", "common_version": getattr(common, "__version__", ""),
                "python_modules": sum(m.endswith(".py") for m in modules), "of_python_modules": available, "files": modules,
                "rule": "the modules the configs name, closed over their imports and package __init__ files; "
                        "names a package exports lazily (common.lazy) bring only their defining module"}
    (staging / package / "VENDORED.json").write_text(json.dumps(manifest, indent=2) + "\n")
    gaps = unresolved(named, staging / package, package)
    if gaps:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"{name}'s configs name {', '.join(g.replace(package, 'common', 1) for g in gaps)}, which the vendored copy of "
                          f"common does not provide (no such module or name); fix the config or the module, then export again")
    staging.rename(dest)
    shutil.make_archive(str(zip_path.with_suffix("")), "zip", root_dir=out, base_dir=name)
    logger.info(f"Exported {name}: {dest} ({manifest['python_modules']} of {available} Python modules of common as package {package}, "
                f"listed in {package}/VENDORED.json; {len(large)} large files listed) and {zip_path}")
    return dest, zip_path


def main(bundle: str, output_dir: str = "dist", url_prefix: str = "", max_file_mb: float = MAX_FILE_MB, overwrite: bool = False,
         monailabel: bool = False) -> int:
    """Export a bundle as a standalone folder and zip (vendored ``common`` code, Model Zoo ``large_files.yml``); print both paths as JSON.

    Args:
        bundle: the bundle folder, e.g. ``bundles/btcv_finetune``.
        output_dir: where ``<name>/`` and ``<name>.zip`` go.
        url_prefix: where large weight files will be hosted (written to ``large_files.yml``).
        max_file_mb: weight files above this size are listed in ``large_files.yml`` instead of copied.
        overwrite: replace an earlier export.
        monailabel: for a MONAI Label app: the metadata names the label map ``inference.json`` writes (label value -> name).
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dest, zip_path = export_bundle(bundle, output_dir, url_prefix, float(max_file_mb), overwrite, monailabel)
    print(json.dumps({"folder": str(dest), "zip": str(zip_path)}))
    return 0


if __name__ == "__main__":
    sys.exit(command(main))
