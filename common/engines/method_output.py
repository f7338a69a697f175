"""What every method's training forward returns: named tensors for its loss and for panels.

MONAI's ``SupervisedTrainer`` hands ``network(inputs)`` to ``loss_function(pred, target)`` and keeps it
as ``engine.state.output["pred"]`` for handlers. MONAI has no type for a forward that yields more
than one tensor (student and teacher logits, a reconstruction and its mask, two views), so each
method returns a :class:`MethodOutput`: its loss reads the keys it needs, and
:class:`common.handlers.ReconstructionImageHandler` draws the panel keys when they are there.

Panel keys (optional): ``input`` ``(B, C, D, H, W)`` what the network saw, ``mask``
``(B, 1, D, H, W)`` bool (True: hidden from the network), ``reconstruction`` ``(B, C, D, H, W)``.
Every other key is the method's own (documented on its model).
"""

from __future__ import annotations

from typing import Any

#: keys :class:`common.handlers.ReconstructionImageHandler` reads
PANEL_KEYS = ("input", "mask", "reconstruction")


class MethodOutput(dict):
    """A ``dict`` of named outputs, also readable as attributes (``out.reconstruction``).

    A dict (not a NamedTuple) so that DDP, AMP and MONAI's engine treat it like any mapping output,
    and one method can add a key without touching the others.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"this method's output has no '{name}' (keys: {sorted(self)})") from None


def require(output: Any, keys: tuple[str, ...], reader: str) -> MethodOutput:
    """``output`` if it is a :class:`MethodOutput` with ``keys``; else a ``TypeError`` naming what is missing.

    ``reader`` names who needs it (e.g. ``"MedContextLoss"``) for the message.
    """
    if not isinstance(output, MethodOutput):
        raise TypeError(f"{reader} needs a method's training output (MethodOutput with {', '.join(keys)}), got {type(output).__name__}; "
                        "is the model in training mode, and is it the method's model?")
    missing = [k for k in keys if k not in output]
    if missing:
        raise TypeError(f"{reader} needs {', '.join(missing)} in the method output (it has {', '.join(sorted(output))})")
    return output
