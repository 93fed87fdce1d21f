"""Hostile numbers (and other ill-typed values) through the API: refused before any work, naming the field.

Three layers: the checks themselves (``backends.validation``), the wiring (every event of the app built by
``build_demo()`` goes through ``demos.common.wire`` and every input is a checked control), and the contract:
the app launched in-process on stand-in weights, driven by raw HTTP (``POST /gradio_api/call/<name>``) and by
gradio_client, with NaN, infinities, 1e30, 2**64, out-of-range values, 2.5 for counts, strings, booleans and
nulls on every number of every endpoint. Each must come back as the field's own message in well under a
second (the handlers never run), with no server path, and the server must still answer afterwards.
"""

from __future__ import annotations

import json
import math
import re

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from backends import validation
from backends.errors import InputError, shorten
from demos import common
from tests.app_server import running_app

# --------------------------------------------------------------------------- the checks


@pytest.mark.parametrize(("value", "message"), [
    (math.nan, "Steps must be a whole number from 1 to 200, got NaN."),
    (math.inf, "Steps must be a whole number from 1 to 200, got infinity."),
    (-math.inf, "Steps must be a whole number from 1 to 200, got minus infinity."),
    (1e30, "Steps must be a whole number from 1 to 200, got 1e+30."),
    (2**64, "Steps must be a whole number from 1 to 200, got 18446744073709551616."),
    (0, "Steps must be a whole number from 1 to 200, got 0."),
    (201, "Steps must be a whole number from 1 to 200, got 201."),
    (2.5, "Steps must be a whole number from 1 to 200, got 2.5."),
    ("5", "Steps must be a whole number from 1 to 200, got the text '5'."),
    (True, "Steps must be a whole number from 1 to 200, got true."),
    (None, "Steps must be a whole number from 1 to 200, got nothing."),
    ([5], "Steps must be a whole number from 1 to 200, got a list."),
    ({"value": 5}, "Steps must be a whole number from 1 to 200, got an object."),
    (10**400, "Steps must be a whole number from 1 to 200, got " + shorten(str(10**400), 30) + "."),
])
def test_a_count_refuses_what_the_ui_never_sends(value, message):
    with pytest.raises(InputError) as raised:
        validation.check_number(value, "Steps", 1, 200, integer=True)
    assert str(raised.value) == message


def test_a_number_too_long_to_print_is_still_described():
    assert validation.describe(10**5000) == "a number with thousands of digits"


def test_accepted_numbers_come_back_as_the_handler_needs_them():
    assert validation.check_number(200.0, "Steps", 1, 200, integer=True) == 200
    assert type(validation.check_number(200.0, "Steps", 1, 200, integer=True)) is int
    assert validation.check_number(-0.3, "Jaw", -0.3, 0.3, integer=False) == -0.3
    assert type(validation.check_number(1, "Jaw", -0.3, 3, integer=False)) is float
    assert validation.check_number(validation.MAX_SEED, "Seed", 0, validation.MAX_SEED, integer=True) == 2**32 - 1
    with pytest.raises(InputError, match=r"^Step size must be a number from 0\.01 to 1, got 5\.0\.$"):
        validation.check_number(5.0, "Step size", 0.01, 1.0, integer=False)


def test_flags_choices_and_text():
    assert validation.check_flag(False, "Paste back") is False
    with pytest.raises(InputError, match=r"^Paste back must be true or false, got the text 'false'\.$"):
        validation.check_flag("false", "Paste back")  # bool("false") would be True
    with pytest.raises(InputError, match=r"^Paste back must be true or false, got 1\.$"):
        validation.check_flag(1, "Paste back")
    assert validation.check_choice("official", "Variant", ["official", "corrected"]) == "official"
    with pytest.raises(InputError) as raised:
        validation.check_choice("x" * 10**6, "Variant", ["official", "corrected"])
    assert str(raised.value) == ("Variant must be one of 'official', 'corrected'; got the text '"
                                 + "x" * 39 + "… (1,000,000 characters)'.")
    assert validation.check_choice("my path", "Path", ["a"], custom=True) == "my path"
    with pytest.raises(InputError, match=r"^Path must be at most 200 characters, got 1,000,000\.$"):
        validation.check_choice("w" * 10**6, "Path", ["a"], custom=True)
    with pytest.raises(InputError, match=r"^Path must be one of 'a'; got 3\.$"):
        validation.check_choice(3, "Path", ["a"], custom=True)
    assert validation.check_text(None, "Prompt") is None
    with pytest.raises(InputError, match=r"^Prompt must be text, got 5\.$"):
        validation.check_text(5, "Prompt")
    with pytest.raises(InputError, match=r"^Prompt must be at most 20,000 characters, got 20,001\.$"):
        validation.check_text("a" * 20_001, "Prompt")


def test_details_sent_back_must_be_capped_plain_json():
    assert validation.check_json(None, "Details") is None
    assert validation.check_json({"timeline": []}, "Details") == {"timeline": []}
    with pytest.raises(InputError) as caught:
        validation.check_json("x", "Details")
    assert str(caught.value) == "Details must be a JSON object or list, got the text 'x'."
    with pytest.raises(InputError) as caught:
        validation.check_json({"t": math.nan}, "Details")
    assert str(caught.value) == "Details must be plain JSON (no NaN or infinity)."
    with pytest.raises(InputError) as caught:
        validation.check_json({"k": "a" * 300_000}, "Details")
    assert str(caught.value) == "Details must be at most 200,000 characters of JSON, got 300,009."


def test_the_example_timeline_is_drawn_from_details_and_refuses_others():
    import gradio as gr

    from demos.expression import _timeline_from_details

    update = _timeline_from_details({"timeline": [{"t": 0.0, "probabilities": {"anger": 0.75, "fear": 0.25}},
                                                  {"t": 0.5, "probabilities": {"anger": 0.5, "fear": 0.5}}]})
    frame = update["value"]
    assert update["visible"] is True and frame.shape == (4, 3)
    assert frame["probability"].tolist() == [0.75, 0.25, 0.5, 0.5]
    assert _timeline_from_details({"timeline": [{"t": 0.0, "probabilities": {"anger": 1.0}}]})["visible"] is False
    with pytest.raises(gr.Error) as caught:
        _timeline_from_details({"timeline": [{"t": "soon"}]})
    assert "not those of an expression result" in str(caught.value)


def test_shorten_keeps_a_message_short_and_on_one_line():
    assert shorten("Older ↔ younger") == "Older ↔ younger"
    assert shorten("a\nb\tc") == "a b c"
    assert shorten("w" * 10**6) == "w" * 59 + "… (1,000,000 characters)"
    assert len(shorten("w" * 10**6, 20)) < 45


# --------------------------------------------------------------------------- the wiring


@pytest.fixture(scope="module")
def demo():
    import app

    return app.build_demo()


NUMERIC = (common.CheckedSlider, common.CheckedNumber)


def _public(demo) -> dict[str, object]:
    return {fn.api_name: fn for fn in demo.fns.values() if fn.api_name and fn.api_visibility == "public"}


def test_every_named_endpoint_is_wired_through_the_checks(demo):
    endpoints = _public(demo)
    assert {"anonymize", "anonymize_zip", "pos_generate", "pos_diagnose", "edit_latent_path", "latent_path_strip",
            "move_directions", "reenact_image", "reenact_video", "expression_video", "expression_photo",
            "align_face", "models", "models_by_tab"} <= set(endpoints)
    checked = tuple(common.CHECKED.values()) + common.UPLOAD_INPUTS
    for name, fn in endpoints.items():
        assert getattr(fn.fn, "facelab_checked_inputs", None) == tuple(fn.inputs), f"/{name} is not wired by wire()"
    assert getattr(demo.preprocess_data, "facelab_checked", False), "requests are not checked as a whole"
    for fn in demo.fns.values():  # every event, also the private ones and gradio's own (the examples)
        for component in fn.inputs:
            assert isinstance(component, checked), f"{fn.api_name}: {type(component).__name__} is not checked"


def test_every_number_has_a_finite_range_and_seeds_the_generators_range(demo):
    numbers = {(c.label, c.minimum, c.maximum) for fn in _public(demo).values() for c in fn.inputs
               if isinstance(c, NUMERIC)}
    assert len(numbers) >= 25
    for label, low, high in numbers:
        assert low is not None and high is not None and math.isfinite(low) and math.isfinite(high), label
    seeds = {(label, low, high) for label, low, high in numbers if label.startswith("Seed")}
    assert seeds == {("Seed", 0, validation.MAX_SEED), ("Seed (sampled face, ψ 0.7)", 0, validation.MAX_SEED)}


def test_a_control_rebuilt_by_an_update_is_still_checked():
    import gradio as gr

    slider = gr.Slider(1, 8, value=1, step=1, label="Steps")
    common.check_inputs([slider])
    rebuilt = type(slider)(**slider.constructor_args, render=False)  # what gradio does with gr.Slider(...) updates
    with pytest.raises(gr.Error) as raised:
        rebuilt.preprocess(math.nan)
    assert raised.value.message == "Steps must be a whole number from 1 to 8, got NaN."
    assert rebuilt.get_block_name() == "slider"  # the same front end


# --------------------------------------------------------------------------- the contract


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on stand-in weights; results (if a handler ever ran) would land in a folder the tests watch."""
    import os

    results = tmp_path_factory.mktemp("results")
    saved = os.environ.get("FACELAB_RESULTS_DIR")
    os.environ["FACELAB_RESULTS_DIR"] = str(results)
    try:
        with running_app(standin=True) as url:
            yield url, results
    finally:
        if saved is None:
            os.environ.pop("FACELAB_RESULTS_DIR", None)
        else:
            os.environ["FACELAB_RESULTS_DIR"] = saved


@pytest.fixture(scope="module")
def client(server):
    return Client(server[0], verbose=False)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server[0], timeout=60) as session:
        yield session


def call_raw(http: httpx.Client, api_name: str, data: list) -> tuple[str, object]:
    """One call as a hostile client makes it: JSON (NaN and Infinity literals allowed) to /gradio_api/call."""
    body = json.dumps({"data": data}, allow_nan=True)
    posted = http.post(f"gradio_api/call/{api_name}", content=body, headers={"content-type": "application/json"})
    assert posted.status_code == 200, posted.text[:200]
    event_id = posted.json()["event_id"]
    stream = http.get(f"gradio_api/call/{api_name}/{event_id}").text
    kind = re.findall(r"^event: (\w+)$", stream, flags=re.M)[-1]
    payload = stream.rsplit("data: ", 1)[1].strip()
    return kind, json.loads(payload) if payload and payload != "null" else None


def baseline(fn) -> list:
    """The controls' own values (what the UI sends untouched); uploads empty."""
    values = []
    for component in fn.inputs:
        values.append(None if isinstance(component, (*common.UPLOAD_INPUTS, common.CheckedFile))
                      else component.value)
    return values


def hostile_values(component, *, every: bool) -> list[tuple[object, str]]:
    """(value, how the message shows it) for one numeric control: the worst few, or ``every`` kind."""
    low, high = component.minimum, component.maximum
    step = 1 if common.counts(component) else high - low
    values = [(math.nan, "NaN"), (math.inf, "infinity"), (1e30, "1e+30"),
              (high + step, validation.describe(high + step))]
    if every:
        values += [(-math.inf, "minus infinity"), (2**64, "18446744073709551616"), ("5", "the text '5'"),
                   (True, "true"), (None, "nothing"), ([1], "a list"), (low - step, validation.describe(low - step))]
    if common.counts(component):
        values.append((low + 0.5, validation.describe(low + 0.5)))
    return values


GENERIC = ("Something went wrong", "verbose error reporting", "Traceback", "Error(")
SERVER_PATH = re.compile(r"/(tmp|root|home|work|usr|var)/")


def test_every_number_of_every_endpoint_refuses_hostile_values_over_raw_http(demo, server, http):
    """The worst values on every number of every endpoint; every kind of value on one control of each kind."""
    results = server[1]
    refused, kinds_done = 0, set()
    for name, fn in sorted(_public(demo).items()):
        good = baseline(fn)
        for position, component in enumerate(fn.inputs):
            if not isinstance(component, NUMERIC):
                continue
            kind = "a whole number" if common.counts(component) else "a number"
            every = (type(component), kind) not in kinds_done
            kinds_done.add((type(component), kind))
            for value, shown in hostile_values(component, every=every):
                data = list(good)
                data[position] = value
                event, payload = call_raw(http, name, data)
                expected = (f"{component.label} must be {kind} from {validation.number_text(component.minimum)} "
                            f"to {validation.number_text(component.maximum)}, got {shown}.")
                assert (event, payload and payload.get("error")) == ("error", expected), (name, component.label, value)
                refused += 1
    assert kinds_done == {(common.CheckedSlider, "a whole number"), (common.CheckedSlider, "a number"),
                          (common.CheckedNumber, "a whole number"), (common.CheckedNumber, "a number")}
    assert refused >= 180  # 36 numbers on 7 endpoints
    assert not any(results.iterdir()), "a refused request must not reach a handler"


POOL = 64  # the anonymization endpoints' fake pool size: one of the listed choices on a CPU

ISSUE_CASES = [  # the exact requests of the report: each was a generic error before
    ("pos_diagnose", ["a cat", "artists", "", 0.5, math.nan, "tangent"],
     "k (subspace dimension) must be a whole number from 1 to 64, got NaN."),
    ("pos_diagnose", ["a cat", "artists", "", 0.5, 2.5, "tangent"],
     "k (subspace dimension) must be a whole number from 1 to 64, got 2.5."),
    ("anonymize", [None, 0.0, 1, 1e30, 1, "official", False, POOL],
     "Seed must be a whole number from 0 to 4294967295, got 1e+30."),
    ("anonymize", [None, 0.0, 1, 2**64, 1, "official", False, POOL],
     "Seed must be a whole number from 0 to 4294967295, got 18446744073709551616."),
    ("anonymize_zip", [None, 0.0, math.nan, 0, 1, "official", False, POOL],
     "Optimisation steps must be a whole number from 1 to 200, got NaN."),
    ("anonymize_zip", [None, 0.0, 1, 0, math.nan, "official", False, POOL],
     "Candidates must be a whole number from 1 to 16, got NaN."),
    ("latent_path_strip", ["seed", None, 0, "attributes", "Older ↔ younger", 6.0, math.nan, 0.15, "stored", False,
                           True], "Frames must be a whole number from 2 to 15, got NaN."),
    ("edit_latent_path", ["seed", None, math.nan, "attributes", "Older ↔ younger", 1.0, 0.15, "stored", False],
     "Seed (sampled face, ψ 0.7) must be a whole number from 0 to 4294967295, got NaN."),
    ("edit_latent_path", ["seed", None, 0, "attributes", "w" * 10**6, 1.0, 0.15, "stored", False],
     "Path must be at most 200 characters, got 1,000,000."),
    ("latent_path_strip", ["seed", None, 0, "attributes", "w" * 10**6, 6.0, 3, 0.15, "stored", False, True],
     "Path must be at most 200 characters, got 1,000,000."),
    ("move_directions", [None, True, False, math.nan] + [0.0] * 14,
     "Yaw (°) must be a number from -30 to 30, got NaN."),
    ("anonymize", [None, 0.0, 1, 0, 1, "official", "false", POOL],
     "Already aligned (FFHQ-aligned crops: skip face detection) must be true or false, got the text 'false'."),
    ("anonymize", [None, 0.0, 1, 0, 1, "fast", False, POOL], "Variant must be one of 'official', 'corrected'; got the "
                                                       "text 'fast'."),
]


@pytest.mark.parametrize(("api_name", "data", "message"), ISSUE_CASES, ids=[c[0] for c in ISSUE_CASES])
def test_the_reported_requests_get_the_fields_message(http, api_name, data, message):
    event, payload = call_raw(http, api_name, data)
    assert (event, payload["error"]) == ("error", message)


def test_gradio_client_gets_the_same_messages(client):
    cases = [
        ("/anonymize", [None, 0.0, 500, 0, 1, "official", False, POOL],
         "Optimisation steps must be a whole number from 1 to 200, got 500."),
        ("/anonymize", [None, 0.0, 1, -1, 1, "official", False, POOL],
         "Seed must be a whole number from 0 to 4294967295, got -1."),
        ("/pos_generate", ["a cat", "artists", "", 0.5, 4, "tangent", 1e30, False, 1, None],
         "Seed must be a whole number from 0 to 4294967295, got 1e+30."),
        ("/pos_generate", ["a cat", "artists", "", 0.5, 2.5, "tangent", 0, False, 1, None],
         "k (subspace dimension) must be a whole number from 1 to 64, got 2.5."),
        ("/pos_diagnose", ["a cat", "artists", "", "0.5", 4, "tangent"],
         "λ (0: PCA of the theme) must be a number from 0 to 1, got the text '0.5'."),
        ("/edit_latent_path", ["seed", None, 0, "attributes", "Older ↔ younger", 1.0, 5.0, "stored", False],
         "Step size must be a number from 0.01 to 1, got 5.0."),
        ("/move_directions", [None, True, False] + [0.0] * 14 + [1e308],
         "Expression 10 (FLAME) must be a number from -3 to 3, got 1e+308."),
    ]
    for api_name, data, message in cases:
        with pytest.raises(AppError) as raised:
            client.predict(*data, api_name=api_name)
        assert raised.value.message == message, api_name


def test_values_in_range_reach_the_handler_and_the_server_still_answers(server, client):
    """The bounds themselves pass (200.0 steps is 200), so the handler's own message comes back."""
    with pytest.raises(AppError, match=r"^Please upload a zip of photos\.$"):
        client.predict(None, 1.0, 200.0, validation.MAX_SEED, 16, "corrected", True, api_name="/anonymize_zip")
    with pytest.raises(AppError, match=r"^Please upload a zip of photos\.$"):
        client.predict(None, 0.0, 1, 0, 1, "official", False, api_name="/anonymize_zip")
    table = client.predict(api_name="/models")
    assert len(table["data"]) > 10
    assert not any(server[1].iterdir())


def test_no_message_is_generic_or_shows_a_server_path(demo, http):
    """A sample across every endpoint and every kind of control, uploads included; each answer is the
    control's own message."""
    for name, fn in sorted(_public(demo).items()):
        for position, component in enumerate(fn.inputs):
            takes_text = isinstance(component, common.CheckedTextbox) or getattr(component, "allow_custom_value", 0)
            values = [math.nan, {"path": "/etc/passwd"}, "x" * 300_000, [{"path": "/x", "meta": {}}],
                      "/etc/passwd" if not takes_text else True]  # a fine text would run the handler
            turn = position + len(name)
            for value in (values[turn % 5],  # one kind per control in turn, every kind on most endpoints
                          {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}):
                data = baseline(fn)
                data[position] = value
                event, payload = call_raw(http, name, data)
                assert event == "error", (name, component.label, value, payload)
                message = payload["error"]
                assert message.startswith(str(component.label)), (name, component.label, value, message)
                assert not any(g in message for g in GENERIC) and not SERVER_PATH.search(message), message
                assert len(message) < 400, message


def test_uploads_must_come_through_the_upload_route(http):
    """A bare {"path": ...} would otherwise make the server open any file it can read (gradio checks a path
    only when the payload carries its "meta" marker), and a URL would be fetched for the client."""
    options = [0.0, 1, 0, 1, "official", False, POOL]
    cases = [
        ({"path": "/etc/passwd"}, "Face photo must be a file uploaded to this server (gradio_client: handle_file); "
                                  "'passwd' is not one."),
        ({"path": "../../../etc/hosts", "meta": {"_type": "gradio.FileData"}},
         "Face photo must be a file uploaded to this server (gradio_client: handle_file); 'hosts' is not one."),
        ({"url": "http://127.0.0.1:9/x.png", "meta": {"_type": "gradio.FileData"}},
         "Face photo must be a file uploaded to this server (gradio_client: handle_file), got an object."),
        ("/etc/passwd", "Face photo must be a file uploaded to this server (gradio_client: handle_file), got the "
                        "text '<file>'."),
        (math.nan, "Face photo must be a file uploaded to this server (gradio_client: handle_file), got NaN."),
    ]
    for payload, message in cases:
        event, answer = call_raw(http, "anonymize", [payload, *options])
        assert (event, answer["error"]) == ("error", message)


def test_a_short_input_list_names_what_the_endpoint_takes(http):
    event, payload = call_raw(http, "anonymize_zip", [None, 0.0])
    assert (event, payload["error"]) == ("error", (
        "This endpoint takes 8 inputs (Zip of photos (at most 20 images, 50 MB), Identity margin m, Optimisation "
        "steps, Seed, Candidates, Variant, Already aligned (FFHQ-aligned crops: skip face detection), Fake pool "
        "(faces)); got 2."))
    event, payload = call_raw(http, "models", [])
    assert event == "complete" and len(payload[0]["data"]) > 10  # no inputs, none needed

