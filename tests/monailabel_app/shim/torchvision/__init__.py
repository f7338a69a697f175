"""Stand-in for torchvision in the MONAI Label test environment (no CPU build of torchvision exists here).

``monailabel.transform.post`` imports ``torchvision.utils.make_grid`` and ``save_image`` at module level
for its pathology/image-dump helpers, which a 3D bundle never calls. PyPI's torchvision wheels are built
against CUDA torch and fail to import on the CPU build of torch. This package satisfies the import and
raises if anything actually calls into it, so a test that passes did not use torchvision.
"""

__version__ = "0.0.0+stand-in"
