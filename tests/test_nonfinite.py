"""Non-finite losses stop the run naming the cases (weights untouched), or are skipped and counted."""

from __future__ import annotations

import copy

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, MetaTensor
from monai.engines import SupervisedTrainer

from common.handlers import NonFiniteLossError, NonFiniteLossGuard


def trainer_with_bad_case(bad_index: int = 2, amp: bool = False):
    torch.manual_seed(0)
    data = []
    for i in range(5):
        image = torch.rand(1, 4, 4, 4)
        if i == bad_index:
            image[0, 1, 1, 1] = float("nan")  # one NaN voxel, as in a broken scan
        data.append({"image": MetaTensor(image, meta={"filename_or_obj": f"case{i}.nii.gz"}), "label": torch.rand(1, 4, 4, 4)})
    net = torch.nn.Conv3d(1, 1, 1)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=DataLoader(data, batch_size=1, shuffle=False),
        network=net, optimizer=torch.optim.AdamW(net.parameters(), lr=0.1), loss_function=torch.nn.MSELoss(), amp=amp,
    )
    snapshots = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: snapshots.append(copy.deepcopy(net.state_dict())))
    return trainer, net, snapshots


def test_stop_names_the_case_and_leaves_the_weights():
    trainer, net, snapshots = trainer_with_bad_case()
    NonFiniteLossGuard("stop").attach(trainer)
    with pytest.raises(NonFiniteLossError, match=r"iteration 3 on cases case2\.nii\.gz.*newest checkpoint is the last good state"):
        trainer.run()
    assert len(snapshots) == 2
    for k, v in net.state_dict().items():  # the NaN never reached the weights
        torch.testing.assert_close(v, snapshots[-1][k])
        assert torch.isfinite(v).all()


def test_skip_drops_the_step_counts_it_and_goes_on():
    trainer, _, snapshots = trainer_with_bad_case()
    guard = NonFiniteLossGuard("skip", max_skips=1)
    guard.attach(trainer)
    trainer.run()
    assert guard.skipped == 1 and len(snapshots) == 5
    for k in snapshots[1]:
        torch.testing.assert_close(snapshots[2][k], snapshots[1][k])  # the bad step changed nothing
        assert not torch.equal(snapshots[3][k], snapshots[2][k])  # the next one trained
        assert torch.isfinite(snapshots[-1][k]).all()
    assert guard.state_dict() == {"skipped": 1}  # saved in checkpoints with the trainer


def test_too_many_skips_stop():
    trainer, _, _ = trainer_with_bad_case()
    NonFiniteLossGuard("skip", max_skips=0).attach(trainer)
    with pytest.raises(NonFiniteLossError, match="after 0 skipped steps"):
        trainer.run()
    with pytest.raises(ValueError, match="on_nonfinite_loss"):
        NonFiniteLossGuard("ignore")


@pytest.mark.slow  # two bundle runs (17 s); the guard's rules are unit-tested above in the fast tier
def test_bundle_stops_on_a_nan_scan_and_can_skip_it(tmp_path):
    """ctfm_pretrain on a datalist whose second scan has NaN voxels: the pre-flight check names it; with the
    check off, the loss guard stops before any update is written; ``on_nonfinite_loss skip`` trains through
    it and exports finite weights."""
    import json

    import nibabel as nib
    import numpy as np
    from conftest import BUNDLES, assert_ok, run_bundle_here

    rng = np.random.default_rng(0)
    files = []
    for i in range(2):
        volume = rng.uniform(-1000, 1000, (40, 40, 24)).astype(np.float32)
        if i == 1:
            volume[::3, ::3, ::3] = np.nan  # every crop sees some
        nib.save(nib.Nifti1Image(volume, np.diag([4.0, 4.0, 4.0, 1.0])), tmp_path / f"scan{i}.nii.gz")
        files.append({"image": str(tmp_path / f"scan{i}.nii.gz")})
    (tmp_path / "datalist.json").write_text(json.dumps({"training": files}))
    overrides = {"init_filters": 4, "blocks_down": [1, 1, 1, 1, 1], "pixdim": [4.0, 4.0, 4.0], "crop_size": [16, 32, 32], "num_crops": 2,
                 "batch_size": 2, "num_steps": 2, "epoch_length": 1, "warmup_steps": 1, "num_workers": 0, "checkpoint_interval": 1,
                 "datalist": str(tmp_path / "datalist.json")}
    configs = [BUNDLES / "ctfm_pretrain" / "configs" / "train.json"]
    # with the pre-flight check on, the NaN scan is named before training (test_bad_input_matrix, "nan", ctfm_pretrain)
    overrides["preflight"] = False  # let the NaNs reach training: the loss guard's turn
    stopped = run_bundle_here(configs, {**overrides, "bundle_root": str(tmp_path / "stop")})
    assert stopped.returncode != 0 and "non-finite training loss" in stopped.stdout + stopped.stderr
    assert not (tmp_path / "stop" / "models" / "model.pt").exists()  # nothing written from a poisoned step
    out = assert_ok(run_bundle_here(configs, {**overrides, "bundle_root": str(tmp_path / "skip"), "on_nonfinite_loss": "skip"}))
    assert out.count("step skipped") == 2
    weights = torch.load(tmp_path / "skip" / "models" / "model.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
