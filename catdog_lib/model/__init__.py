"""The network: pretrained backbones and heads (backbones), the frozen backbone's fast runners (engine) and
cached features (features, cachefiles), checkpoints and their checks (checkpoint, modelfile)."""
