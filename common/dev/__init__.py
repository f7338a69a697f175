"""Development tools of the collection: never imported by the runtime, a bundle or an exported bundle.

- :mod:`common.dev.config_sources`: the generator that writes ``bundles/*/configs/*.json`` from shared
  blocks and per-bundle sources (``python -m common.dev.config_sources write|check|stats``).
"""
