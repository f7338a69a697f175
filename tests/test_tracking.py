"""MLflow tracking through MONAI's ``--tracking mlflow`` option, into a local SQLite store."""

from __future__ import annotations

import pytest

from conftest import BUNDLES, assert_ok, run_bundle

pytestmark = pytest.mark.slow


def test_btcv_training_logs_loss_and_validation_metrics_to_mlflow(tmp_path, phantom_root):
    mlflow = pytest.importorskip("mlflow", reason="MLflow tracking is optional (requirements-tracking.txt)")
    configs = BUNDLES / "btcv_finetune" / "configs"
    o = {"bundle_root": str(tmp_path), "run_dir": str(tmp_path), "phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1,
         "num_workers": 0, "num_steps": 2, "epoch_length": 1, "tracking": "mlflow", "experiment_name": "btcv_tracking_test"}
    assert_ok(run_bundle([configs / "train.json", configs / "demo.json"], o))
    store = tmp_path / "eval" / "mlruns.db"
    assert store.is_file()
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{store}")
    (run,) = client.search_runs([client.get_experiment_by_name("btcv_tracking_test").experiment_id])
    assert run.info.status == "FINISHED"
    assert {"train_loss", "val_mean_dice", "val_nsd"} <= set(run.data.metrics)
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2  # one value per step
    assert len(client.get_metric_history(run.info.run_id, "val_mean_dice")) == 2  # one per validation (every epoch)
