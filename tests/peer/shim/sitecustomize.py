"""Loaded by every Python process of a peer run (the runner puts this folder on PYTHONPATH).

1. The endpoint shim, one entry: the official clients leave production only for
   ``KAGGLE_API_ENVIRONMENT=LOCALHOST``, which kagglesdk maps to ``http://localhost`` (port 80).
   ``KAGFLOW_PEER_ENDPOINT`` moves that one entry of ``kagglesdk.kaggle_env._env_to_endpoint`` to the
   local server's URL. Nothing else of the clients changes.
2. A recorder (``KAGFLOW_PEER_REQUESTS``: a JSON-lines file): every HTTP exchange's method, URL, JSON
   body and, for JSON or failed answers, the answer, tagged with the test running
   (``KAGFLOW_PEER_TEST``). It reads what the client would read anyway and never changes an answer;
   credentials (headers) are never written.
"""

import json
import os

_ENDPOINT = os.environ.get("KAGFLOW_PEER_ENDPOINT")
_RECORD = os.environ.get("KAGFLOW_PEER_REQUESTS")
_BODY_CHARS = 2000

if _ENDPOINT:
    from kagglesdk import kaggle_env

    kaggle_env._env_to_endpoint[kaggle_env.KaggleEnv.LOCAL] = _ENDPOINT.rstrip("/")

if _RECORD:
    import requests

    _send = requests.Session.send

    def _text(data):
        if data is None:
            return None
        if isinstance(data, bytes):
            data = data[:_BODY_CHARS].decode("utf-8", "replace")
        return data[:_BODY_CHARS] if isinstance(data, str) else f"<{type(data).__name__}>"

    def _answer(response, streamed):
        kind = response.headers.get("Content-Type", "")
        small = int(response.headers.get("Content-Length") or 0) <= 1 << 16
        if response.status_code >= 400 or ("json" in kind and (small or not streamed)):
            return _text(response.content)  # cached by requests: the client reads the same bytes later
        return f"<{kind or 'no content type'}, {response.headers.get('Content-Length', '?')} bytes>"

    def _recording_send(self, request, **kwargs):
        entry = {"test": os.environ.get("KAGFLOW_PEER_TEST", ""), "method": request.method, "url": request.url,
                 "body": _text(request.body) if not hasattr(request.body, "read") else "<file>"}
        try:
            response = _send(self, request, **kwargs)
        except Exception as exc:
            entry.update(status=None, answer=f"{type(exc).__name__}: {exc}"[:_BODY_CHARS])
            _write(entry)
            raise
        entry.update(status=response.status_code, answer=_answer(response, kwargs.get("stream", False)))
        _write(entry)
        return response

    def _write(entry):
        with open(_RECORD, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    requests.Session.send = _recording_send
