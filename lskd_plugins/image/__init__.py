"""Image classification on timm: LS teachers, KD students, evaluation, data sets."""
