"""The local Kaggle's environment variables, each named once (the server, its control and the sandbox read them)."""

DATA_DIR_ENV = "KAGFLOW_LOCAL_DATA_DIR"  # where a server started without --data-dir keeps its data
USERS_ENV = "KAGFLOW_LOCAL_USERS"  # a users file: turns key checking on (see control.load_users)
CONSISTENCY_ENV = "KAGFLOW_LOCAL_CONSISTENCY"  # "eventual": imitate Kaggle's delays (see server/consistency.py)
IDLE_ENV = "KAGFLOW_LOCAL_IDLE_S"  # seconds a background server waits idle before it stops (0: never; see control.py)
