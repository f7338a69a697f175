"""Handlers: atomic checkpoints, pruning, resume from the newest, encoder export, TensorBoard panels."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.networks.nets import SwinUNETR

from common.handlers import (
    AtomicCheckpointSaver,
    NonFiniteLossGuard,
    PretrainedWeightsExporter,
    ResumeFromLatest,
    atomic_torch_save,
    latest_checkpoint,
    list_checkpoints,
)
from common.networks import encoder_state_dict


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("boom while writing")


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"a": torch.ones(3)}, path)
    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"a": Unpicklable()}, path)
    assert torch.equal(torch.load(path)["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"], "temporary file left behind"


def make_training(steps_per_epoch: int = 5):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3)

    def step(engine, batch):
        opt.zero_grad()
        loss = model(batch).pow(2).mean()
        loss.backward()
        opt.step()
        sched.step()
        return loss.item()

    engine = Engine(step)
    data = [torch.randn(4, 3) for _ in range(steps_per_epoch)]
    return engine, data, {"model": model, "optimizer": opt, "lr_scheduler": sched, "trainer": engine}


def test_saver_interval_pruning_and_resume(tmp_path):
    engine, data, objs = make_training()
    AtomicCheckpointSaver(str(tmp_path), objs, interval=3, n_saved=2).attach(engine)
    engine.run(data, max_epochs=2)  # 10 iterations: saves at 3, 6, 9 and the final 10
    assert [it for it, _ in list_checkpoints(tmp_path)] == [9, 10]
    assert latest_checkpoint(tmp_path).name == "checkpoint_10.pt"
    final_weight = objs["model"].weight.detach().clone()

    # a fresh process: new objects, resumed from the newest checkpoint, trained to 4 epochs
    engine2, data2, objs2 = make_training()
    ResumeFromLatest(str(tmp_path), objs2).attach(engine2)
    seen = []
    engine2.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.iteration))
    resumed_weight = {}
    engine2.add_event_handler(Events.STARTED, lambda e: resumed_weight.setdefault("w", objs2["model"].weight.detach().clone()))
    engine2.run(data2, max_epochs=4)
    assert torch.equal(resumed_weight["w"], final_weight)
    assert seen[0] == 11 and engine2.state.iteration == 20, "continued after iteration 10, not from 0"
    assert objs2["lr_scheduler"].last_epoch == 20


def test_disabled_resume_refuses_to_overwrite_an_earlier_run(tmp_path):
    engine, data, objs = make_training()
    AtomicCheckpointSaver(str(tmp_path), objs, interval=5).attach(engine)
    engine.run(data, max_epochs=1)
    engine2, data2, objs2 = make_training()
    ResumeFromLatest(str(tmp_path), objs2, enabled=False).attach(engine2)
    with pytest.raises(FileExistsError, match="checkpoint_5.pt"):
        engine2.run(data2, max_epochs=1)


def test_iteration_seed_makes_the_draws_of_a_step_a_function_of_the_step():
    from ignite.engine import Engine, Events

    from common.handlers import IterationSeed

    def run(start: int) -> dict[int, tuple]:
        engine, seen = Engine(lambda e, b: None), {}
        IterationSeed(seed=3).attach(engine)
        engine.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.__setitem__(
            e.state.iteration, (torch.rand(2).tolist(), np.random.rand(2).tolist(), random.random())))
        if start:
            engine.load_state_dict({"iteration": start, "epoch_length": 4, "max_epochs": 3})  # a resumed run
        engine.run(range(4), max_epochs=3)
        return seen

    straight, resumed = run(0), run(6)
    assert set(resumed) == set(range(7, 13)) and all(resumed[i] == straight[i] for i in resumed)  # a resumed run draws the same
    assert straight[7] != straight[8]  # and the steps differ from each other


def test_resume_skips_an_unreadable_newest_checkpoint_tolerates_older_ones_and_cleans_temporaries(tmp_path, caplog):
    engine, data, objs = make_training()
    AtomicCheckpointSaver(str(tmp_path), objs, interval=5, n_saved=None).attach(engine)
    engine.run(data, max_epochs=2)  # checkpoints 5 and 10
    (tmp_path / "checkpoint_10.pt").write_bytes(b"disk fault")
    (tmp_path / ".checkpoint_15.pt.x1.tmp").write_bytes(b"cut by a kill")
    engine2, data2, objs2 = make_training()
    ResumeFromLatest(str(tmp_path), {**objs2, "guard": NonFiniteLossGuard()}).attach(engine2)  # "guard" is not in these checkpoints
    starts = []
    engine2.add_event_handler(Events.ITERATION_STARTED, lambda e: starts.append(e.state.iteration))
    with caplog.at_level("INFO"):
        engine2.run(data2, max_epochs=2)
    assert starts[0] == 6  # from checkpoint_5
    assert "cannot read checkpoint" in caplog.text and "has no ['guard']" in caplog.text
    assert not list(tmp_path.glob(".checkpoint_*.tmp"))


def test_encoder_export_matches_downstream_swinunetr_keys(tmp_path):
    pretrain = SwinUNETR(in_channels=1, out_channels=1, feature_size=12, depths=(1, 1, 1, 1), window_size=4, use_v2=True)
    engine = Engine(lambda e, b: None)
    PretrainedWeightsExporter(pretrain, str(tmp_path), preprocessing={"intensity_range": [0.1, 1.0]}).attach(engine)
    engine.run([0], max_epochs=1)
    encoder = torch.load(tmp_path / "encoder.pt")
    info = json.loads((tmp_path / "encoder.json").read_text())
    assert info["network"]["class"] == "SwinUNETR" and info["training"]["num_encoder_tensors"] == len(encoder) == len(encoder_state_dict(pretrain))
    assert info["preprocessing"]["intensity_range"] == [0.1, 1.0]
    assert not any(k.startswith(("decoder", "out.")) for k in encoder)
    # a 14-class downstream SwinUNETR takes every encoder tensor, same name and shape
    downstream = SwinUNETR(in_channels=1, out_channels=14, feature_size=12, depths=(1, 1, 1, 1), window_size=4, use_v2=True)
    target = downstream.state_dict()
    assert all(k in target and target[k].shape == v.shape for k, v in encoder.items())
    missing, unexpected = downstream.load_state_dict(encoder, strict=False)
    assert not unexpected and len(missing) == len(target) - len(encoder)
    full = torch.load(tmp_path / "model.pt")
    assert set(full) == set(pretrain.state_dict())


def test_reconstruction_panel_shows_prediction_only_inside_the_mask():
    from common.handlers.tensorboard import reconstruction_panel

    image = torch.linspace(0.1, 1.0, 16 * 16 * 16).reshape(1, 16, 16, 16)
    mask = torch.zeros(1, 16, 16, 16, dtype=torch.bool)
    mask[:, :, :8] = True
    pred = torch.full_like(image, 0.1)
    panel = reconstruction_panel(image, torch.where(mask, 0.0, image), mask, pred, axis=2)
    assert panel.shape == (1, 16, 64) and panel.min() >= 0 and panel.max() <= 1
    orig, masked_in, m, rec = np.split(panel[0], 4, axis=1)
    assert np.array_equal(m > 0.5, mask[0, :, :, 8].numpy())
    assert np.allclose(rec[~(m > 0.5)], orig[~(m > 0.5)]) and not np.allclose(rec[m > 0.5], orig[m > 0.5])


@pytest.mark.parametrize("max_epochs, expected", [(7, [3, 6, 7]), (6, [3, 6]), (1, [1])])
def test_validation_runs_every_interval_and_after_the_last_epoch(max_epochs, expected):
    from monai.engines import SupervisedEvaluator

    from common.handlers import ValidationWithFinal

    evaluator = SupervisedEvaluator(device="cpu", val_data_loader=[{"image": torch.zeros(1, 1, 2, 2), "label": torch.zeros(1, 1, 2, 2)}], network=torch.nn.Identity())
    validated = []
    evaluator.add_event_handler(Events.COMPLETED, lambda e: validated.append(e.state.epoch))  # the trainer's epoch
    trainer = Engine(lambda e, b: None)
    ValidationWithFinal(validator=evaluator, interval=3, epoch_level=True).attach(trainer)
    trainer.run(range(2), max_epochs=max_epochs)
    assert validated == expected


def test_a_shared_writer_follows_its_folder_when_an_earlier_run_is_moved_aside(tmp_path):
    """Two runs in one process (the evidence harness, ``--resume False`` moving the first run's outputs aside): the
    second run's scalars go to a new event file in the folder it names, not into the moved one."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from common.handlers.tensorboard import close_writers, shared_writer

    log_dir = str(tmp_path / "tensorboard")
    shared_writer(log_dir).add_scalar("loss", 1.0, 1)
    shared_writer(log_dir).flush()
    (tmp_path / "tensorboard").rename(tmp_path / "tensorboard.superseded")
    writer = shared_writer(log_dir)
    writer.add_scalar("loss", 2.0, 1)
    close_writers()
    values = []
    for events in sorted((tmp_path / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        values += [e.value for e in acc.Scalars("loss")]
    assert values == [2.0] and len(list((tmp_path / "tensorboard.superseded").glob("events.*"))) == 1
