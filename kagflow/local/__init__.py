"""Local Kaggle: a Kaggle-compatible API on loopback that stores datasets and models and runs kernels.

Point the official client at it with ``KAGFLOW_KAGGLE_ENDPOINT=http://127.0.0.1:PORT``
(``kagflow.hub.endpoint.ENDPOINT_ENV``). Importing this package imports nothing: each piece is its module.

    control.py       the background server: ensure_background_server(data_dir) -> url (it stops by itself once
                     idle for $KAGFLOW_LOCAL_IDLE_S, default IDLE_S), stop_background_server,
                     serve_forever(data_dir, port, users=load_users(path)) (what ``python -m kagflow.local serve``
                     and ``kagflow local serve`` run), running_url, health, default_data_dir
    env.py           its environment variables ($KAGFLOW_LOCAL_DATA_DIR, $KAGFLOW_LOCAL_USERS,
                     $KAGFLOW_LOCAL_CONSISTENCY, $KAGFLOW_LOCAL_IDLE_S)
    server/          the server: httpd.py (LocalServer, start_server(data_dir, port=0, *, faults, settings,
                     users, tokens)), api.py (the route registry, Ctx, Settings), one api_<service>.py per Kaggle
                     service, protocol.py (kagglesdk's wire types), store.py (SQLite + content-addressed blobs:
                     the data-dir layout), transfer.py / archives.py / unpack.py (uploads, downloads), access.py
                     (who sees what), names.py (safe names), jobs.py (the work queue: kernel runs, scoring), idle.py
                     (the idle clock: requests and jobs),
                     competition.py (install_competition, accept_rules, score_submission), metrics.py (the
                     scorers, by name), consistency.py (the eventual mode: Kaggle's delays), quota.py, faults.py;
                     the web pages: web.py (routes, answers), web_views.py / web_outputs.py (page data),
                     web_login.py (one-time links, sessions), pages/ (Jinja templates, the stylesheet, the live log)
    run/             how a kernel runs: runner.py (run_notebook_in_sandbox, the one runner), executor.py (copied
                     into each run), sandbox.py (bubblewrap), mounts.py (Kaggle's /kaggle/input layouts),
                     limits.py (Kaggle's limits), image.py (the local Kaggle image)
"""
