"""QLoRA text classifier runtime shipped inside Kaggle kernels.

Imports only the stdlib and its ML stack; nothing from kagflow outside this package,
because notebooks inline it as a top-level package. Importing the package itself is
stdlib-only, so ``offline`` and ``paths`` work before the ML wheels are installed.
The competition's columns, classes, metric and submission format are a ``task.Task`` (kagflow.toml's ``[data]``).
"""
