"""sparsecam training: a U-Net learned with low-rank + sparse proximal losses (owns torch)."""
