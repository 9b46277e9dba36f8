"""Server refusals become typed errors whose hints come from one table (kagflow.hub.errors.REFUSALS)."""

from __future__ import annotations

import pytest
import requests

from kagflow.errors import (
    NotFoundError,
    NotSupportedError,
    PermissionDeniedError,
    RefusedError,
    RulesNotAcceptedError,
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


def test_a_403_for_rules_not_accepted_says_so_with_the_rules_url():
    """Kaggle's 403 to a download before the rules are accepted is not a credentials problem."""
    body = ('{"code": 403, "message": "You must accept this competition\'s rules before you\'ll be able to '
            'download files."}')
    err = translate(_error(403, body), what="download competition files", handle=COMPETITION, target=KAGGLE)
    assert isinstance(err, RulesNotAcceptedError) and isinstance(err, PermissionDeniedError)
    assert f"the rules of competition {COMPETITION} are not accepted by {USER}" in err.message
    assert f"https://www.kaggle.com/competitions/{COMPETITION}/rules" in err.hint
    assert "credentials" not in err.message + err.hint
    plain = translate(_error(403), what="create model", handle="alice/m", target=KAGGLE)  # any other 403
    assert type(plain) is PermissionDeniedError and "refused the credentials" in plain.message


def test_rules_not_accepted_through_the_real_client(server, api, tmp_path):
    """The local Kaggle's 403 to a user who has not accepted the rules, through the official client."""
    from kagflow.hub.client import build_api

    bob = build_api(server.url)
    bob.config_values.update(username="bob", key="b")
    gw = gateway(bob, server)
    with pytest.raises(RulesNotAcceptedError) as err:
        gw.call(lambda: bob.competition_download_files(COMPETITION, path=str(tmp_path), quiet=True),
                what="download competition files", handle=COMPETITION)
    assert f"the rules of competition {COMPETITION} are not accepted by" in err.value.message
    assert "kagflow local competition --accept-rules" in err.value.hint
