"""QLoRA preference classifier runtime shipped inside Kaggle kernels.

Imports only the stdlib and its ML stack; nothing from kagflow outside this package,
because notebooks inline it as a top-level package. Importing the package itself is
stdlib-only, so ``offline`` and ``paths`` work before the ML wheels are installed.
"""

LABEL_COLUMNS = ("winner_model_a", "winner_model_b", "winner_tie")
ID2LABEL = {0: "A_wins", 1: "B_wins", 2: "tie"}
LABEL2ID = {v: k for k, v in ID2LABEL.items()}
