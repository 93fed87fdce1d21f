"""Network definitions written for Face Lab in plain PyTorch.

Each module here re-implements a published architecture so that the official
checkpoints load strictly, without CUDA extensions, on CPU and CUDA alike.
"""
