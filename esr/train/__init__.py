"""BasicSR training for esr's archs: registration bridge, contrastive loss, HR-only data,
multi-stage warm-start runner and the DITN LayerNorm -> Tanh conversion.

Importing this package does not import BasicSR; :func:`esr.train.bridge.register_all` does.
"""
