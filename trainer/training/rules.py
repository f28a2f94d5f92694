"""What every stepper keeps to alike."""

EVAL_CHUNK = 1_000  # test samples per forward pass; the same for any stack size
ADAM_BETAS = (0.9, 0.999)  # PyTorch's Adam defaults, which the reference uses
ADAM_EPS = 1e-8
