"""edgewatch trainer: fits a 1D-conv autoencoder on sensor windows and exports one self-describing ONNX model."""
