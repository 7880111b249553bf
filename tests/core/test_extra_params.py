"""``extra_params`` in every shape Label Studio stores or sends (its Connect Model form saves a string)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.core.errors import BadRequest
from backends.core.extra_params import parse_extra_params

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=8)


@pytest.mark.parametrize("value", [None, "", "   ", "\n", {}])
def test_what_the_form_leaves_empty_means_no_overrides(value):
    assert parse_extra_params(value) == {}


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=4))
def test_an_object_and_its_json_text_mean_the_same(params):
    assert parse_extra_params(params) == params
    assert parse_extra_params(json.dumps(params)) == params
    assert parse_extra_params(json.dumps(params, indent=2)) == params  # typed over several lines


@pytest.mark.parametrize("text, fragment", [
    ("{epochs: 5}", "is not valid JSON"),
    ('{"epochs": 5', "is not valid JSON"),
    ("[1, 2]", "got a JSON array: [1, 2]"),
    ("5", "got a JSON number: 5"),
    ('"epochs"', 'got a JSON string: "epochs"'),
    ("null", "got a JSON null"),
])
def test_text_that_is_not_a_json_object_is_a_400_quoting_it(text, fragment):
    with pytest.raises(BadRequest) as caught:
        parse_extra_params(text)
    message = caught.value.message
    assert caught.value.status == 400 and "'extra_params'" in message and fragment in message
    assert '{"epochs": 5}' in message  # says what to write instead


@pytest.mark.parametrize("value", [[1], 5, True, 2.5])
def test_other_json_values_are_a_400(value):
    with pytest.raises(BadRequest, match="'extra_params' must be a JSON object"):
        parse_extra_params(value)


def test_a_long_refused_text_is_quoted_on_one_short_line():
    with pytest.raises(BadRequest) as caught:
        parse_extra_params("{\n" + "x" * 500)
    assert "\n" not in caught.value.message and len(caught.value.message) < 250
