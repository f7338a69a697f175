"""The four published methods, one folder each: masking, model wrapper, loss and batch preparation.

- :mod:`common.methods.subfore`: SubFore (seed 000), masked image modelling with foreground subvolumes.
- :mod:`common.methods.medcontext`: MedContext (seed 001), segmentation with masked-context
  reconstruction in the output space, student / EMA teacher.
- :mod:`common.methods.anatomask`: AnatoMask (seed 002), teacher-loss-ranked masking with an
  easy-to-hard schedule, SparK-style masked CNN.
- :mod:`common.methods.ctfm`: CT-FM (seed 003), intra-sample SimCLR of a SegResEncoder; its
  classifier and embedding encoder.

Methods build on the shared packages (``engines``, ``handlers``, ``networks``, ``masking``, ``data``,
``transforms``, ``runs``); those never import a method (``tests/test_architecture.py``). Every
method's model returns a :class:`common.engines.MethodOutput`, which its loss reads and
:class:`common.handlers.ReconstructionImageHandler` draws from.
"""
