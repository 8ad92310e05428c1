"""The network: backbones (MiniLM offline, BERT online), task heads, Projected Attention Layers, the multitask
model with its losses and predictions, and which parameters a phase trains (freeze)."""
