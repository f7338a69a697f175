"""A MONAI Label app serving every exported bundle in its ``model/`` folder, as the ``monaibundle``
sample app does (``get_bundle_models`` + one ``BundleInferTask`` per bundle); started by
``monailabel start_server`` in tests/test_monailabel.py."""

from __future__ import annotations

from monailabel.interfaces.app import MONAILabelApp
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.utils.others.generic import get_bundle_models


class BundlesApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict) -> None:
        self.models = get_bundle_models(app_dir, conf)
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="ssl3d bundles",
                         description="exported segmentation bundles of the ssl3d collection", version="1")

    def init_infers(self) -> dict:
        return {name: BundleInferTask(path, self.conf) for name, path in self.models.items()}
