"""Offline Model Zoo checks for a bundle folder, as a library and a command.

The Model Zoo's own ``ci/verify_bundle.py`` downloads its metadata schema and wants a GPU for the
full mode; MONAI ships no standalone validator. This runs the same kinds of checks with nothing but
the installed requirements and the schema kept in this package (``metadata.schema.json``):

========================  =================================================================
check                     what it asserts
========================  =================================================================
``files``                 configs/metadata.json, train.json, multi_gpu_train.json, docs/README.md, LICENSE;
                          inference.json and evaluate.json for bundles that predict (``pred`` output);
                          inference-only bundles (no train.json, e.g. retrieval) need inference.json instead
``json``                  every ``configs/*.json`` parses
``metadata_schema``       metadata.json against the schema (field, type and pattern errors)
``changelog``             ``version`` is a key of ``changelog``
``channel_def``           every input/output has one ``channel_def`` entry per channel (a ``labels`` output:
                          one per label value)
``net_in_out``            MONAI's ``verify_net_in_out`` on ``network_def`` (inference.json, else train.json);
                          against ``outputs.network_output`` in metadata exported for MONAI Label
``properties_<type>``     ``ConfigWorkflow.check_properties`` for the train and inference workflows
``torchscript``           ``ckpt_export`` of randomly initialised weights, scripted as the Zoo does; a network
                          that only traces fails, except SwinUNETR (traced; the Zoo excuses its own the same way)
``monailabel``            segmentation bundles: the keys MONAI Label's bundle tasks read and override exist,
                          ``postprocessing`` writes no files, ``preprocessing`` runs on MONAI Label's data
``monailabel_labels``     the label names MONAI Label reads from metadata match the label map inference writes
                          (``label_map_names``); fails only in metadata exported for MONAI Label, reported otherwise
========================  =================================================================

Command (one bundle or several; exit code 1 if any check fails)::

    python -m common.zoo.verify bundles/btcv_finetune [bundles/...] [--quick] [--skip torchscript]

``--quick`` builds the network at the size of the bundle's demo overlay (:func:`demo_network`:
SwinUNETR ``feature_size`` 12 with one block per stage, CT-FM's encoders with one block per level)
so the network checks take seconds on a CPU; the checks themselves are the same.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from common.cli import CommandLineError, command, value_list
from common.paths import bundle_on_path
from common.zoo.findings import Finding
from common.zoo.monailabel import NETWORK_OUTPUT_KEY, check_monailabel

logger = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).with_name("metadata.schema.json")
ALL_CHECKS = ("files", "json", "metadata_schema", "changelog", "channel_def", "net_in_out", "properties_train", "properties_infer", "torchscript", "monailabel",
              "monailabel_labels")
#: Networks TorchScript cannot compile, and why (they are exported by tracing at the ROI size instead).
NOT_SCRIPTABLE = {
    "SwinUNETR": "its blocks call torch.utils.checkpoint, whose **kwargs signature TorchScript cannot compile",
}
#: Networks built for one input size (position embeddings): their trace input is never shrunk.
FIXED_INPUT_SIZE = {"UNETR", "ViT", "ViTAutoEnc"}
def _load_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def _predicts(meta: dict) -> bool:
    """A bundle whose metadata declares a ``pred`` output (segmentation) must ship inference/evaluate configs."""
    out = meta.get("network_data_format", {}).get("outputs", {})
    return any(v.get("format") == "segmentation" for v in out.values() if isinstance(v, dict))


def _inference_only(bundle: Path) -> bool:
    """No train.json but an inference.json: a bundle that only applies weights (e.g. ctfm_retrieval)."""
    return not (bundle / "configs" / "train.json").is_file() and (bundle / "configs" / "inference.json").is_file()


def check_files(bundle: Path, meta: dict | None) -> list[Finding]:
    required = ["configs/metadata.json", "docs/README.md", "LICENSE"]
    required += ["configs/inference.json"] if _inference_only(bundle) else ["configs/train.json", "configs/multi_gpu_train.json"]
    if meta is not None and _predicts(meta):
        required += ["configs/inference.json", "configs/evaluate.json"]
    missing = [r for r in required if not (bundle / r).is_file()]
    return [Finding("files", not missing, f"missing: {missing}" if missing else f"{len(required)} required files present")]


def check_json(bundle: Path) -> list[Finding]:
    bad = []
    for p in sorted((bundle / "configs").glob("*.json")):
        try:
            _load_json(p)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            bad.append(f"{p.name}: {e}")
    return [Finding("json", not bad, "; ".join(bad) if bad else "all configs/*.json parse")]


def check_metadata(meta: dict) -> list[Finding]:
    import jsonschema

    validator = jsonschema.Draft7Validator(_load_json(SCHEMA_PATH))
    errors = sorted(validator.iter_errors(meta), key=lambda e: list(e.path))
    schema = Finding(
        "metadata_schema",
        not errors,
        "; ".join(f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:10]) if errors else f"valid against {SCHEMA_PATH.name}",
    )
    version, changelog = meta.get("version"), meta.get("changelog", {})
    log = Finding("changelog", isinstance(changelog, dict) and version in changelog, f"version {version!r} {'is' if version in changelog else 'is not'} in the changelog")
    bad = []
    for side in ("inputs", "outputs"):
        for name, t in meta.get("network_data_format", {}).get(side, {}).items():
            if not isinstance(t, dict):
                continue
            if t.get("format") == "labels":  # a label map (common.zoo.monailabel): channel_def maps label values, not channels
                if not all(str(k).isdigit() for k in t.get("channel_def", {})):
                    bad.append(f"{side}/{name}: a label map's channel_def keys must be label values (0, 1, ...)")
            elif len(t.get("channel_def", {})) != t.get("num_channels"):
                bad.append(f"{side}/{name}: {len(t.get('channel_def', {}))} channel_def entries for num_channels {t.get('num_channels')}")
    return [schema, log, Finding("channel_def", not bad, "; ".join(bad) if bad else "one channel_def entry per channel (label values for a label map)")]


def _network_config(bundle: Path) -> Path:
    inference = bundle / "configs" / "inference.json"
    return inference if inference.is_file() else bundle / "configs" / "train.json"


def _network_parser(bundle: Path) -> Any:
    """A ``ConfigParser`` of the config that defines the bundle's ``network_def``, as published."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(_network_config(bundle)))
    return parser


def demo_network(bundle: str | Path) -> dict:
    """The entries of ``<bundle>/configs/demo.json`` that size the network: the one source of CPU-sized networks.

    An entry counts when its key is under ``network_def`` (``network_def#depths``), is a key the
    network definition of the bundle's network config references, directly or through other keys
    (``@feature_size``, ``@roi_size`` for UNETR, ``@encoder_def`` -> ``@init_filters``), or restates the
    metadata's input/output shapes at that size (``_meta_#network_data_format#...``); the demo's run
    and data entries are left out. ``{}`` without a demo overlay.
    """
    import re

    bundle = Path(bundle)
    demo_file = bundle / "configs" / "demo.json"
    if not demo_file.is_file():
        return {}
    parser = _network_parser(bundle)
    referenced, todo = set(), ["network_def"]
    while todo:  # the keys network_def references, and what those reference (network_def -> @encoder_def -> @init_filters)
        for ref in re.findall(r"@([A-Za-z_]\w*)", json.dumps(parser.get(todo.pop(), None))):
            if ref not in referenced:
                referenced.add(ref)
                todo.append(ref)
    demo = _load_json(demo_file)
    return {k: v for k, v in demo.items() if k.startswith("network_def#") or (not k.startswith("_") and k in referenced)}


def quick_metadata(bundle: Path, network: dict) -> dict:
    """``_meta_`` overrides that describe the network at the demo's size (``network``: :func:`demo_network`).

    A network built for its ROI (UNETR's ``@roi_size``) takes and gives the demo's ROI; an embedding's
    width is the demo network's (measured: an encoder's narrows with it, a projection head's does not),
    so ``--quick`` checks the embedding's shape and dtype, the full check its published width too.
    What the demo does not change stays as published.
    """
    parser = _network_parser(bundle)  # as published: the demo's sizes are in ``network``
    fmt = _load_json(bundle / "configs" / "metadata.json").get("network_data_format", {})
    o: dict = {}
    for part in ("inputs", "outputs") if "roi_size" in network else ():
        o.update({f"_meta_#network_data_format#{part}#{name}#spatial_shape": list(network["roi_size"])
                  for name, spec in fmt.get(part, {}).items() if spec.get("spatial_shape")})
    embeddings = [name for name, spec in fmt.get("outputs", {}).items() if spec.get("format") == "embedding"]
    if embeddings and network:  # an encoder's width shrinks with the demo's (a projection head's may not): measured once
        parser.update(network)
        image = next(iter(fmt["inputs"].values()))
        with torch.no_grad():
            width = parser.get_parsed_content("network_def").eval()(torch.zeros(1, image["num_channels"], *image["spatial_shape"])).shape[1]
        o.update({f"_meta_#network_data_format#outputs#{name}#num_channels": int(width) for name in embeddings})
    return o


def _overrides(bundle: Path, quick: bool, tmp: Path) -> dict:
    parser = _network_parser(bundle)
    o: dict = {"bundle_root": str(tmp / "bundle_root"), "device": "$torch.device('cpu')"}
    if "pretrained" in parser:  # the checks are structural: random weights, not a weights file the user has not placed yet
        o["pretrained"] = ""
    if quick:
        network = demo_network(bundle)
        o.update({**network, **quick_metadata(bundle, network)})
    return o


def check_net_in_out(bundle: Path, meta: dict, overrides: dict) -> list[Finding]:
    from monai.bundle import verify_net_in_out

    cfg = _network_config(bundle)
    try:
        config_overrides = {k: v for k, v in overrides.items() if k != "device"}  # clashes with verify_net_in_out's own argument
        outputs = meta.get("network_data_format", {}).get("outputs", {})
        if NETWORK_OUTPUT_KEY in outputs:  # exported for MONAI Label: pred is the written label map, the network is described here
            config_overrides["_meta_#network_data_format#outputs#pred"] = outputs[NETWORK_OUTPUT_KEY]
        verify_net_in_out(net_id="network_def", meta_file=str(bundle / "configs" / "metadata.json"), config_file=str(cfg), device="cpu", **config_overrides)
    except Exception as e:  # mismatch (ValueError), missing key, network that cannot be built
        return [Finding("net_in_out", False, f"{cfg.name}: {type(e).__name__}: {e}")]
    return [Finding("net_in_out", True, f"network_def of {cfg.name} maps the metadata's input to its output channels and dtype")]


def check_properties(bundle: Path, overrides: dict, tmp: Path) -> list[Finding]:
    from monai.bundle import ConfigWorkflow

    findings = []
    # 4 training phantoms: a full batch for every bundle's default batch size (drop_last loaders refuse fewer)
    data = {"phantom_dir": str(tmp / "phantoms"), "num_phantoms": 5, "num_phantom_validation": 1, "cache_rate": 0.0, "num_workers": 0}
    for workflow_type, name in (("train", "train.json"), ("infer", "inference.json")):
        cfg = bundle / "configs" / name
        if not cfg.is_file():
            continue
        try:
            wf = ConfigWorkflow(
                config_file=str(cfg), meta_file=str(bundle / "configs" / "metadata.json"), workflow_type=workflow_type,
                logging_file=False, **{**overrides, **data},
            )
            wf.initialize()
            missing = wf.check_properties()
        except Exception as e:
            findings.append(Finding(f"properties_{workflow_type}", False, f"{name}: {type(e).__name__}: {e}"))
            continue
        findings.append(Finding(f"properties_{workflow_type}", not missing, f"{name}: missing or misplaced properties {missing}" if missing else f"{name}: every {workflow_type} property present"))
    return findings


def check_torchscript(bundle: Path, overrides: dict, tmp: Path, max_side: int | None = None) -> list[Finding]:
    """Export ``network_def`` with MONAI's ``ckpt_export`` (scripted, else traced) and run the result;
    ``max_side`` caps the trace input's sides (``--quick``: 64, a multiple of every network's stride)."""
    from monai.bundle import ckpt_export

    cfg, meta_file = _network_config(bundle), bundle / "configs" / "metadata.json"
    parser = _network_parser(bundle)
    parser.read_meta(str(meta_file))
    parser.update(overrides)
    net = parser.get_parsed_content("network_def")
    torch.save(net.state_dict(), tmp / "model.pt")
    image = next(iter(parser["_meta_#network_data_format#inputs"].values()))  # with the overrides' shapes (--quick: the demo's)
    if type(net).__name__ in FIXED_INPUT_SIZE:
        max_side = None
    shape = [1, image["num_channels"], *[min(s, max_side or s) if isinstance(s, int) else 64 for s in image["spatial_shape"]]]
    name = type(net).__name__
    excused = name in NOT_SCRIPTABLE
    errors = [NOT_SCRIPTABLE[name]] if excused else []
    for use_trace in ((True,) if excused else (False, True)):
        try:
            ckpt_export(
                net_id="network_def", filepath=str(tmp / "model.ts"), ckpt_file=str(tmp / "model.pt"), meta_file=str(meta_file),
                config_file=str(cfg), use_trace=use_trace, input_shape=shape if use_trace else None, **overrides,
            )
            loaded = torch.jit.load(str(tmp / "model.ts"))
            with torch.no_grad():
                out = loaded(torch.rand(*shape))
        except Exception as e:
            errors.append(f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")
            continue
        if not use_trace:
            return [Finding("torchscript", True, f"{name} exported scripted; output {tuple(out.shape)}")]
        # the Zoo's ckpt_export scripts; a network that only traces fails there, except the SwinUNETR it excuses itself
        return [Finding("torchscript", excused, f"{name} exported traced, not scripted ({errors[0]}); output {tuple(out.shape)}"
                        + ("" if excused else ": make it scriptable (the Model Zoo's ckpt_export scripts)"))]
    return [Finding("torchscript", False, f"{name} neither scripts nor traces: {' | '.join(errors)}")]


def verify_bundle(bundle_dir: str | Path, quick: bool = False, skip: Sequence[str] = ()) -> list[Finding]:
    """Run every check (except ``skip``) on one bundle folder; never raises for a bundle defect."""
    bundle = Path(bundle_dir)
    unknown = set(skip) - set(ALL_CHECKS)
    if unknown:
        raise CommandLineError(f"--skip: unknown checks {sorted(unknown)}; give some of {list(ALL_CHECKS)}")
    meta_path = bundle / "configs" / "metadata.json"
    meta = None
    findings: list[Finding] = []
    if meta_path.is_file():
        try:
            meta = _load_json(meta_path)
        except json.JSONDecodeError:
            meta = None
    findings += check_files(bundle, meta)
    findings += check_json(bundle)
    if meta is not None:
        findings += check_metadata(meta)
    runnable = all(f.ok for f in findings if f.check in ("files", "json")) and meta is not None
    with tempfile.TemporaryDirectory(prefix="verify_bundle_") as t, bundle_on_path(bundle):  # an exported bundle's vendored package resolves
        tmp = Path(t)
        if runnable:
            overrides = _overrides(bundle, quick, tmp)
            if "net_in_out" not in skip:
                findings += check_net_in_out(bundle, meta, overrides)
            if "properties_train" not in skip or "properties_infer" not in skip:
                findings += [f for f in check_properties(bundle, overrides, tmp) if f.check not in skip]
            if "torchscript" not in skip:
                findings += check_torchscript(bundle, overrides, tmp, max_side=64 if quick else None)
            if _predicts(meta) and not {"monailabel", "monailabel_labels"} <= set(skip):
                findings += check_monailabel(bundle, meta, overrides, tmp)
    return [f for f in findings if f.check not in skip]


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Silence MONAI's INFO logging (input summaries, workflow messages) so stdout holds only the report."""
    if not enabled:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def main(*bundles: str, quick: bool = False, skip: str | Sequence[str] = (), verbose: bool = False) -> int:
    """Offline Model Zoo checks of bundle folders: print the report as JSON; exit status 1 on any failure.

    Args:
        bundles: bundle folders (each holding ``configs/metadata.json``).
        quick: CPU-sized networks for the network checks (the demo overlay's, :func:`demo_network`).
        skip: checks to leave out (one name, or a list ``"['torchscript','monailabel']"``), of :data:`ALL_CHECKS`.
        verbose: keep MONAI's INFO logs (they go to stdout, before the JSON).
    """
    logging.basicConfig(level=logging.WARNING)
    report, failed = {}, False
    for b in bundles:
        t = time.perf_counter()
        with _quiet(not verbose):
            findings = verify_bundle(b, quick=quick, skip=value_list(skip))
        report[b] = {"ok": all(f.ok for f in findings), "seconds": round(time.perf_counter() - t, 1), "checks": [asdict(f) for f in findings]}
        failed |= not report[b]["ok"]
    print(json.dumps(report, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(command(main))
