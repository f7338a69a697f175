"""Model Zoo tooling: offline bundle verification (:mod:`common.zoo.verify`)."""
