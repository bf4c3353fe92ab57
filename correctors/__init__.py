"""Correctors: encode features, fine-tune, export to ONNX, validate against the champion, swap."""
