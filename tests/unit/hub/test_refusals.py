"""Server refusals become typed errors whose hints come from one table (kagflow.hub.errors.REFUSALS)."""

from __future__ import annotations

import pytest
import requests

from kagflow.errors import (
    NotFoundError,
    NotSupportedError,
    PermissionDeniedError,
    RefusedError,
    ServerError,
    UnreachableError,
)
from kagflow.hub.endpoint import Endpoint
from kagflow.hub.errors import REFUSALS, checked, translate

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import COMPETITION, USER, gateway

LOCAL = Endpoint("local", "http://127.0.0.1:9", USER)
KAGGLE = Endpoint("kaggle", None, USER)


def _error(status: int, body: str = '{"code": 0, "message": "the server says no"}') -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response._content = body.encode()
    response.headers["Content-Type"] = "application/json"
    return requests.HTTPError("x", response=response)


@pytest.mark.parametrize("status,kind", [(404, NotFoundError), (401, PermissionDeniedError),
                                         (403, PermissionDeniedError), (409, RefusedError), (400, RefusedError),
                                         (501, NotSupportedError), (405, NotSupportedError), (503, ServerError),
                                         (429, ServerError)])
def test_each_status_maps_to_its_kind_with_the_tables_hint(status, kind):
    for target, column in ((LOCAL, 2), (KAGGLE, 1)):
        err = translate(_error(status), what="create model", handle="alice/m", target=target)
        assert type(err) is kind and err.status == status and err.handle == "alice/m"
        assert err.server_message == "the server says no" and "the server says no" in err.message
        assert err.hint and err.hint.split("{")[0][:20] == REFUSALS[kind][column].split("{")[0][:20]


def test_a_200_with_an_error_body_is_typed_by_the_body_code():
    err = translate(_error(200, '{"code": 404, "message": "no such model"}'), what="get model",
                    handle="alice/m", target=LOCAL)
    assert isinstance(err, NotFoundError) and err.status == 404


def test_local_not_implemented_is_never_called_a_kaggle_outage(server, api):
    gw = gateway(api, server)
    with pytest.raises(NotSupportedError) as err:
        gw.call(lambda: api.competition_list_topics(COMPETITION), what="list topics", handle=COMPETITION)
    text = str(err.value)
    assert err.value.status == 405 and "The local Kaggle does not support" in err.value.server_message
    assert "Kaggle's side" not in text and "not a Kaggle outage" in text


def test_not_found_through_the_real_client(server, api):
    gw = gateway(api, server)
    with pytest.raises(NotFoundError) as err:
        gw.call(lambda: api.model_get(f"{USER}/nothing-here"), what="get model", handle=f"{USER}/nothing-here")
    assert f"{USER}/nothing-here not found on the local Kaggle" in err.value.message


def test_a_refusal_in_the_answer_is_typed_and_never_hints_kagflow_check():
    class Answer:
        error = "The slug is already in use"

    with pytest.raises(Exception) as raised:
        checked(Answer())
    err = translate(raised.value, what="create dataset", handle="alice/w", target=KAGGLE)
    assert isinstance(err, RefusedError) and not isinstance(err, ValueError)
    assert "The slug is already in use" in err.message and "kagflow check" not in (err.hint or "")


def test_unreachable_names_the_endpoint_and_what_to_check():
    err = translate(requests.ConnectionError("refused"), what="get model", handle="alice/m", target=LOCAL)
    assert isinstance(err, UnreachableError) and "http://127.0.0.1:9" in err.message
    assert "kagflow local start" in err.hint
    err = translate(requests.ConnectTimeout("slow"), what="get model", handle="alice/m", target=KAGGLE)
    assert "https://www.kaggle.com" in err.message and "proxy" in err.hint
