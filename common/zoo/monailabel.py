"""Label names as MONAI Label reads them, and bundle metadata that gives it the written label map.

MONAI Label's ``BundleInferTask`` (monailabel 0.8) takes the *first* entry of the metadata's
``network_data_format.outputs``: its key is the one ``Restored`` puts back on the input grid (it must
be ``pred``, the key MONAI Label writes), and its ``channel_def`` becomes the label names,
``{name.lower(): int(key)}`` with "background" left out; 3D Slicer names the segments from them.

Where the network's output channels are the label values (argmax: btcv_finetune, ctfm_segmentation)
that is right as it stands. Where they are not (brats_finetune: sigmoid TC/WT/ET region channels
written back as one label map in the dataset's numbering), the names would be wrong, while the
Model Zoo's own ``verify_net_in_out`` needs ``outputs.pred`` to describe the network's channels.
Neither MONAI's bundle specification nor MONAI Label has a field for the label map a bundle writes
(the upstream gap filled here), so an export for a MONAI Label app (``--monailabel``) rewrites the
metadata: ``pred`` describes the label map inference writes (``format: "labels"``, one channel,
``channel_def`` = label value -> name, from the inference config's ``label_map_names``), and the
network's output description moves to ``network_output``, which :mod:`common.zoo.verify` checks the
network against instead.

The MONAI Label checks of the bundle verifier live here too (:func:`check_monailabel`): the keys its
bundle tasks read and override, what its infer task drops from postprocessing, and the label names.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.paths import bundle_on_path
from common.zoo.findings import Finding

#: inference-config id of ``{label value: name}`` for the label map the bundle writes (also DICOM-SEG's segments)
LABEL_MAP_KEY = "label_map_names"
#: where the network's own output description goes in metadata exported for MONAI Label
NETWORK_OUTPUT_KEY = "network_output"


def monailabel_labels(meta: Mapping[str, Any]) -> dict[str, int]:
    """``{name: value}`` exactly as ``BundleInferTask`` builds it from ``meta`` (first output, lower-cased,
    background dropped)."""
    outputs = meta.get("network_data_format", {}).get("outputs", {})
    if not outputs:
        return {}
    first = next(iter(outputs.values()))
    return {str(v).lower(): int(k) for k, v in first.get("channel_def", {}).items() if str(v).lower() != "background"}


def written_label_names(bundle_dir: str | Path) -> dict[int, str]:
    """``{label value: name}`` of the label map ``configs/inference.json`` writes (its ``label_map_names``)."""
    from monai.bundle import ConfigParser

    cfg = Path(bundle_dir) / "configs" / "inference.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"{cfg} is missing: the written label map's names come from its '{LABEL_MAP_KEY}'")
    parser = ConfigParser()
    parser.read_config(str(cfg))
    if LABEL_MAP_KEY not in parser:
        raise KeyError(f"{cfg} has no '{LABEL_MAP_KEY}' ({{label value: name}} of the label map it writes)")
    parser["bundle_root"] = str(Path(bundle_dir).resolve())
    with bundle_on_path(bundle_dir):
        names = parser.get_parsed_content(LABEL_MAP_KEY)
    return {int(v): str(n) for v, n in dict(names).items()}


def label_map_output(network_output: Mapping[str, Any], names: Mapping[int, str]) -> dict[str, Any]:
    """Metadata entry for the label map: one channel of integer values, ``channel_def`` value -> name."""
    if not names or any(int(v) <= 0 for v in names):
        raise ValueError(f"label map names must map positive label values to names (0 is background), got {dict(names)}")
    return {
        "type": "image",
        "format": "labels",
        "num_channels": 1,
        "spatial_shape": ["*"] * len(network_output.get("spatial_shape", [0, 0, 0])),  # the input's grid, any size
        "dtype": "uint8",
        "value_range": [0, max(int(v) for v in names)],
        "is_patch_data": False,
        "channel_def": {"0": "background", **{str(int(v)): str(n) for v, n in sorted(names.items())}},
        "description": "the label map inference.json writes; MONAI Label reads its label names from this channel_def. "
                       f"The network's output channels are described under '{NETWORK_OUTPUT_KEY}'.",
    }


def metadata_for_monailabel(meta: Mapping[str, Any], names: Mapping[int, str]) -> dict[str, Any]:
    """``meta`` with ``outputs.pred`` describing the written label map and the network's output under
    :data:`NETWORK_OUTPUT_KEY`; idempotent."""
    out = copy.deepcopy(dict(meta))
    outputs = out.get("network_data_format", {}).get("outputs", {})
    network = outputs.get(NETWORK_OUTPUT_KEY) or outputs.get("pred")
    if network is None:
        raise KeyError("metadata.json has no network_data_format.outputs.pred to describe the network output")
    rest = {k: v for k, v in outputs.items() if k not in ("pred", NETWORK_OUTPUT_KEY)}
    out["network_data_format"]["outputs"] = {"pred": label_map_output(network, names), NETWORK_OUTPUT_KEY: network, **rest}
    return out


#: What MONAI Label's ``BundleInferTask`` reads from inference.json and ``BundleTrainTask`` overrides in train.json.
MONAILABEL_INFER_KEYS = ("bundle_root", "device", "network_def", "preprocessing", "postprocessing", "inferer")
MONAILABEL_TRAIN_KEYS = ("bundle_root", "device", "network", "run", "train#trainer#max_epochs", "train#dataset#data", "train#handlers", "validate#dataset#data")


def _transforms(compose: Any) -> list:
    """The leaf transforms of a (nested) ``Compose``."""
    inner = getattr(compose, "transforms", None)
    if inner is None:
        return [compose]
    return [t for c in inner for t in _transforms(c)]


def check_monailabel(bundle: Path, meta: dict, overrides: dict, tmp: Path) -> list[Finding]:
    """MONAI Label ``monaibundle`` app contract (see ``monailabel.tasks.{infer,train}.bundle``).

    Its infer task runs ``preprocessing``, ``inferer`` and ``postprocessing`` minus ``SaveImaged``
    (it writes the result itself), on a dict that also holds ``image_path`` (a string); its train task
    overrides the train.json ids in :data:`MONAILABEL_TRAIN_KEYS` and loads ``models/model.pt`` into
    ``@network``.
    """
    from monai.bundle import ConfigParser
    from monai.transforms import SaveImaged, Spacingd

    problems = []
    for name, keys in (("inference.json", MONAILABEL_INFER_KEYS), ("train.json", MONAILABEL_TRAIN_KEYS)):
        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / name))
        problems += [f"{name}: no '{k}'" for k in keys if k not in parser]
        if name != "inference.json" or problems:
            continue
        parser.read_meta(str(bundle / "configs" / "metadata.json"))  # overrides may restate the metadata's shapes (verify --quick)
        parser.update({**overrides, "bundle_root": str(tmp)})
        try:
            post = _transforms(parser.get_parsed_content("postprocessing"))
            pre = _transforms(parser.get_parsed_content("preprocessing"))
        except Exception as e:
            problems.append(f"{name}: pre/postprocessing cannot be built: {type(e).__name__}: {e}")
            continue
        writers = [type(t).__name__ for t in post if type(t).__name__.startswith("Save") and not isinstance(t, SaveImaged)]
        if writers:
            problems.append(f"{name}: postprocessing writes files ({', '.join(writers)}); MONAI Label filters only SaveImaged, keep writers out of it")
        if any(type(t) is Spacingd for t in pre):
            problems.append(f"{name}: plain Spacingd in preprocessing fails on MONAI Label's 'image_path' entry; use common.transforms.SpacingKeepExtrasd")
    detail = "; ".join(problems) if problems else "inference/train keys present; postprocessing writes only through SaveImaged (dropped by MONAI Label); preprocessing takes its image_path entry"
    return [Finding("monailabel", not problems, detail), *_check_monailabel_labels(bundle, meta)]


def _check_monailabel_labels(bundle: Path, meta: dict) -> list[Finding]:
    """Do the names MONAI Label reads (first output's channel_def) match the label map inference writes?

    A mismatch fails only in metadata written for MONAI Label (a ``format: "labels"`` first output,
    ``python -m common.zoo.export --monailabel``); in a Model Zoo bundle, whose ``pred`` describes the
    network's channels, it is reported with the way out.
    """
    try:
        written = {n.lower(): v for v, n in sorted(written_label_names(bundle).items())}
    except (FileNotFoundError, KeyError) as e:
        return [Finding("monailabel_labels", True, f"not checked: {e}")]
    read = monailabel_labels(meta)
    if read == written:
        return [Finding("monailabel_labels", True, f"MONAI Label's label names match the written label map: {read}")]
    first = next(iter(meta["network_data_format"]["outputs"].values()))
    for_monailabel = first.get("format") == "labels"
    return [Finding("monailabel_labels", not for_monailabel,
                    f"MONAI Label would name the labels {read}, the written label map is {written}"
                    + ("" if for_monailabel else ": for a MONAI Label app export with `python -m common.zoo.export <bundle> --monailabel`"))]
