"""The two names ``monailabel.transform.post`` imports; both refuse to run (see the package docstring)."""


def make_grid(*args, **kwargs):
    raise NotImplementedError("torchvision stand-in: make_grid is not available in this test environment")


def save_image(*args, **kwargs):
    raise NotImplementedError("torchvision stand-in: save_image is not available in this test environment")
