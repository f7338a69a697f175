"""Command line: build a Decathlon-style datalist JSON from a folder of NIfTI files.

Examples::

    # unlabelled scans for pretraining
    python -m common.data.make_datalist /data/ct --output /data/ct/datalist.json

    # images + labels, 5 folds, 6 cases held out as "validation"
    python -m common.data.make_datalist /data/btcv/imagesTr --labels_dir /data/btcv/labelsTr \\
        --output /data/btcv/datalist.json --num_folds 5 --num_validation 6 --seed 0

Labels are paired with images by case name: identical file names, or names equal after removing
common tags (nnU-Net's ``_0000`` channel suffix, ``img``/``image``/``label``/``seg`` prefixes,
``_seg``/``_label``/``_mask`` suffixes), e.g. BTCV ``img0001.nii.gz`` <-> ``label0001.nii.gz``.
Paths are written relative to the output file's folder when they are below it, else absolute.
"""

from __future__ import annotations

import fnmatch
import json
import random
import re
import sys
from pathlib import Path

from common.cli import command
from common.data.datalist import DatalistError, find_nifti
from common.io import atomic_write_text

_TAGS = re.compile(r"(_0000$|^(img|image|label|labels|seg)[_-]?|[_-](seg|label|labels|mask|gt)([_-].*)?$)", re.IGNORECASE)


def case_key(path: Path) -> str:
    """Case name used to pair an image with its label (see module docstring)."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return _TAGS.sub("", name) or name


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def build_datalist(
    images_dir: str,
    labels_dir: str | None = None,
    output: str | None = None,
    num_folds: int = 0,
    num_validation: int = 0,
    seed: int = 0,
    pattern: str = "*",
) -> dict:
    """Build the datalist dictionary (see :func:`main` for the arguments)."""
    images = [p for p in find_nifti(images_dir) if fnmatch.fnmatch(p.name, pattern)]
    if not images:
        raise DatalistError(f"no .nii or .nii.gz files matching '{pattern}' found under {images_dir}")
    root = Path(output).parent if output else Path(images_dir)
    entries = []
    if labels_dir:
        labels = {case_key(p): p for p in find_nifti(labels_dir)}
        unmatched = [p.name for p in images if case_key(p) not in labels]
        if unmatched:
            raise DatalistError(f"no label in {labels_dir} for images {unmatched[:10]} (paired by case name, see --help)")
        for p in images:
            entries.append({"image": _rel(p, root), "label": _rel(labels[case_key(p)], root)})
    else:
        entries = [{"image": _rel(p, root)} for p in images]
    if not 0 <= num_validation < len(entries):
        raise DatalistError(f"num_validation must be in [0, {len(entries) - 1}], got {num_validation}")
    order = list(range(len(entries)))
    random.Random(seed).shuffle(order)
    validation = sorted(order[:num_validation])
    training = sorted(order[num_validation:])
    if num_folds:
        if not 2 <= num_folds <= len(training):
            raise DatalistError(f"num_folds must be in [2, {len(training)}], got {num_folds}")
        # folds assigned over the shuffled order so each fold is a random, near-equal share
        shuffled_train = [i for i in order if i in set(training)]
        fold_of = {idx: k % num_folds for k, idx in enumerate(shuffled_train)}
        for idx in training:
            entries[idx]["fold"] = fold_of[idx]
    return {
        "description": f"made by common.data.make_datalist from {images_dir}",
        "seed": seed,
        "num_folds": num_folds,
        "training": [entries[i] for i in training],
        "validation": [entries[i] for i in validation],
    }


def main(
    images_dir: str,
    labels_dir: str | None = None,
    output: str = "datalist.json",
    num_folds: int = 0,
    num_validation: int = 0,
    seed: int = 0,
    overwrite: bool = False,
    pattern: str = "*",
) -> int:
    """Write a datalist JSON; a problem (no images, an unpaired image, an existing output) is printed, exit status 1.

    Args:
        images_dir: folder searched recursively for NIfTI images.
        labels_dir: optional folder of label maps, paired with images by case name.
        output: where to write the JSON (refuses to overwrite unless ``--overwrite``).
        num_folds: if >= 2, add a ``"fold"`` field (0..num_folds-1) to each training entry.
        num_validation: cases moved to the ``"validation"`` list (seeded).
        seed: seed for the validation draw and fold assignment.
        overwrite: replace an existing output file.
        pattern: keep only images whose file name matches this glob (e.g. ``'amos_05*'`` for the
            AMOS22 MRI cases).
    """
    out = Path(output)
    try:
        if out.exists() and not overwrite:
            raise DatalistError(f"{out} exists; pass --overwrite to replace it")
        content = build_datalist(images_dir, labels_dir, str(out), num_folds, num_validation, seed, pattern)
    except DatalistError as e:
        print(f"datalist problem: {e}", file=sys.stderr)
        return 1
    atomic_write_text(out, json.dumps(content, indent=2))
    print(f"wrote {out}: {len(content['training'])} training, {len(content['validation'])} validation cases")
    return 0


if __name__ == "__main__":
    sys.exit(command(main))
