"""The pure reply-handling code: reading a model's JSON, Retry-After, the generators'
requests and parse, and the content checks that a model's rewording must pass."""

import json
import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator.backends import wire
from generator.backends.openai import loads_reply
from generator.backends.protocol import BadResponse, reply_value
from generator.backends.wire import StatusError, retry_after
from generator.checks import Checker, final_answer, keeps_content, same_final_answer
from generator.generators import Ask, ReplyError
from generator.generators.hedge import Hedge
from generator.generators.near_miss import NearMiss
from generator.generators.refusal import Refusal
from generator.templates import Prompts
from generator.values import Knowledge, Seed, Skip

MODEL = "test-model"

# -- loads_reply -------------------------------------------------------------------------

OBJ = {"variants": [{"level": "high", "confidence": 0.9, "response": "I believe so."}]}
TEXT = json.dumps(OBJ)


def test_loads_plain_json():
    assert loads_reply(TEXT) == OBJ
    assert loads_reply(f"\n  {TEXT}  \n") == OBJ
    assert loads_reply("[1, 2, 3]") == [1, 2, 3]


@pytest.mark.parametrize("fence", ["```json", "```JSON", "```"])
def test_loads_a_fenced_block(fence):
    assert loads_reply(f"{fence}\n{json.dumps(OBJ, indent=2)}\n```") == OBJ
    # an array has no {...} to fall back on: only the fence handling can read it
    assert loads_reply(f"{fence}\n[1, 2]\n```") == [1, 2]


def test_loads_json_with_words_around_it():
    assert loads_reply(f"Here is the JSON you asked for: {TEXT} Hope this helps!") == OBJ
    assert loads_reply(f"Sure.\n```json\n{TEXT}\n```\nAnything else?") == OBJ


def test_loads_raw_newlines_inside_strings():
    text = '{"response": "line one\nline two\tand a tab"}'
    assert loads_reply(text) == {"response": "line one\nline two\tand a tab"}
    assert loads_reply('["a\nb"]') == ["a\nb"]  # no {...} fallback for an array


@pytest.mark.parametrize(
    "text",
    ["I cannot help with that.", "", "```json\nnot json\n```", "{not: json}", "} backwards {"],
)
def test_non_json_raises_value_error(text):
    with pytest.raises(ValueError):
        loads_reply(text)


@given(st.dictionaries(st.text(max_size=10), st.text(max_size=20) | st.integers(), max_size=5))
def test_loads_reply_round_trips_any_object_with_chatter(obj):
    text = json.dumps(obj, ensure_ascii=False)
    assert loads_reply(text) == obj
    assert loads_reply(f"```json\n{text}\n```") == obj
    assert loads_reply(f"Answer: {text}\nDone.") == obj


# -- the wire's errors and retries -------------------------------------------------------


def test_an_error_page_is_one_short_line_in_a_status_error():
    page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>nginx</body>\r\n" * 9
    error = StatusError(502, page, {})
    assert "\n" not in error.message and 0 < len(error.message) <= 100
    assert str(error) == f"HTTP 502: {error.message}"
    assert StatusError(400, {"message": "too long"}, {}).message == "too long"
    assert StatusError(500, "", {}).message == "" and str(StatusError(500, "", {})) == "HTTP 500"


def test_persist_asks_again_as_long_as_retry_after_says_and_not_after_a_4xx(monkeypatch):
    import asyncio

    waits = []

    async def no_wait(seconds):
        waits.append(seconds)

    monkeypatch.setattr(wire.asyncio, "sleep", no_wait)
    replies = [
        StatusError(429, {"message": "slow"}, {"retry-after": "7"}),
        StatusError(503, "busy", {}),
        wire.Timeout("no reply within 1 s"),
        {"ok": True},
    ]

    async def send(attempt):
        reply = replies[attempt - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply

    assert asyncio.run(wire.persist(send, 5)) == {"ok": True}
    assert waits == [7.0, 1.0, 2.0]  # as asked, then 0.5 s doubling from the attempt
    refused = StatusError(400, {"message": "bad request"}, {})

    async def bad(attempt):
        waits.append(attempt)
        raise refused

    waits.clear()
    with pytest.raises(StatusError):
        asyncio.run(wire.persist(bad, 5))
    assert waits == [1]  # a 400 is not asked again
    unreachable = wire.Unreachable("connection refused")

    async def down(attempt):
        waits.append(attempt)
        raise unreachable

    waits.clear()
    with pytest.raises(wire.Unreachable):
        asyncio.run(wire.persist(down, 5, retry_unreachable=False))
    assert waits == [1]


# -- retry_after -------------------------------------------------------------------------


def rate_limit_error(headers):
    return StatusError(429, {"message": "slow down"}, headers)


def test_retry_after_ms_is_read_in_seconds():
    assert retry_after(rate_limit_error({"retry-after-ms": "1500"})) == pytest.approx(1.5)
    # milliseconds win over seconds when a server sends both
    both = {"retry-after-ms": "250", "retry-after": "30"}
    assert retry_after(rate_limit_error(both)) == pytest.approx(0.25)


def test_retry_after_seconds():
    assert retry_after(rate_limit_error({"retry-after": "7"})) == pytest.approx(7.0)
    assert retry_after(rate_limit_error({"retry-after": "0.5"})) == pytest.approx(0.5)
    assert retry_after(rate_limit_error({"retry-after": "-3"})) == 0.0


def test_garbage_retry_after_ms_falls_back_to_retry_after():
    headers = {"retry-after-ms": "soon", "retry-after": "4"}
    assert retry_after(rate_limit_error(headers)) == pytest.approx(4.0)


def test_retry_after_http_date():
    future = datetime.now(UTC) + timedelta(seconds=120)
    wait = retry_after(rate_limit_error({"retry-after": format_datetime(future, usegmt=True)}))
    assert wait is not None and 117 <= wait <= 121  # HTTP-dates have whole seconds
    past = datetime.fromtimestamp(time.time() - 3600, UTC)
    assert retry_after(rate_limit_error({"retry-after": format_datetime(past, usegmt=True)})) == 0


@pytest.mark.parametrize(
    "error",
    [
        rate_limit_error({"retry-after": "tomorrow-ish"}),
        rate_limit_error({"retry-after": ""}),
        rate_limit_error({}),
        rate_limit_error(None),
        ValueError("no response at all"),
    ],
    ids=["garbage", "empty", "no-header", "no-headers", "no-response"],
)
def test_retry_after_is_none_when_the_server_said_nothing_usable(error):
    assert retry_after(error) is None


# -- generators: requests ----------------------------------------------------------------

PROMPTS = Prompts(None)
CAPITAL = Seed.make(
    "What is the capital of Portugal?", "Lisbon is the capital of Portugal.", id="cap"
)
PENS_REF = "Each box has 7 pens, so 6 boxes have 6 * 7 = 42 pens.\n#### 42"
PENS = Seed.make("A shop sells 6 boxes of 7 pens. How many pens is that?", PENS_REF, id="pens")
NO_ANSWER = Seed.make("What is the capital of Portugal?", None, id="none")


def one_ask(generator, seed) -> Ask:
    asks = generator.requests(seed, random.Random(0))
    assert isinstance(asks, list) and len(asks) == 1
    (ask,) = asks
    assert isinstance(ask, Ask)
    return ask


@pytest.mark.parametrize("cls", [Hedge, Refusal, NearMiss])
def test_requests_ask_once_with_system_and_user_messages_and_the_schema(cls):
    generator = cls(PROMPTS)
    ask = one_ask(generator, PENS)
    assert [m["role"] for m in ask.messages] == ["system", "user"]
    assert all(set(m) == {"role", "content"} and m["content"].strip() for m in ask.messages)
    assert PENS.prompt in ask.messages[1]["content"]
    assert ask.schema == cls.reply_model.model_json_schema()
    assert ask.name == cls.name


def test_requests_are_deterministic_per_rng():
    for cls in (Hedge, Refusal, NearMiss):
        a = cls(PROMPTS).requests(PENS, random.Random(5))
        b = cls(PROMPTS).requests(PENS, random.Random(5))
        assert a == b


def test_hedge_requests_one_level_with_its_measured_p_correct():
    known = replace(CAPITAL, knowledge=Knowledge.measure(True, [True] * 8 + [False] * 2))
    ask = one_ask(Hedge(PROMPTS), known)
    (level,) = ask.choices["levels"]
    assert level["confidence"] == 0.75 and level["p_correct"] == 0.8
    assert level["percent"] == 75 and level["name"] in ask.messages[1]["content"]
    assert "80% of the time" in ask.messages[1]["content"]
    unmeasured = one_ask(Hedge(PROMPTS), CAPITAL).choices["levels"][0]
    assert unmeasured["confidence"] is None and unmeasured["name"] == "unmeasured"


def test_near_miss_request_carries_the_reference_final_answer():
    ask = one_ask(NearMiss(PROMPTS), PENS)
    assert ask.choices["final_answer"] == "42"
    assert PENS_REF.splitlines()[0] in ask.messages[1]["content"]


@pytest.mark.parametrize("cls", [Hedge, NearMiss])
@pytest.mark.parametrize("response", [None, "", "  \n "])
def test_hedge_and_near_miss_skip_a_seed_without_a_reference_answer(cls, response):
    seed = Seed.make("What is the capital of Portugal?", response, id="none")
    out = cls(PROMPTS).requests(seed, random.Random(0))
    assert isinstance(out, Skip)
    assert (out.reason, out.seed_id, out.behavior) == ("no_reference_answer", "none", cls.name)


def test_hedge_skips_a_creative_prompt():
    seed = Seed.make("Write a poem about Lisbon.", "Lisbon, city of light...", id="poem")
    out = Hedge(PROMPTS).requests(seed, random.Random(0))
    assert isinstance(out, Skip) and out.reason == "creative_prompt"


def test_refusal_needs_no_reference_answer():
    ask = one_ask(Refusal(PROMPTS), NO_ANSWER)
    assert NO_ANSWER.prompt in ask.messages[1]["content"]
    assert "<reference>" not in ask.messages[1]["content"]
    assert ask.choices["kind"] in ask.messages[1]["content"]


# -- generators: parse, hedge ------------------------------------------------------------


def hedge_text(level) -> str:
    return (
        f"I believe Lisbon is the capital of Portugal, though I'm only about "
        f"{level['percent']}% confident in that."
    )


def hedge_reply(levels, text=hedge_text):
    return Hedge.reply_model.model_validate(
        {
            "variants": [
                {"level": lv["name"], "confidence": lv["confidence"], "response": text(lv)}
                for lv in levels
            ]
        }
    )


def test_hedge_parse_gives_one_checked_example_per_requested_level():
    generator = Hedge(PROMPTS)
    ask = one_ask(generator, CAPITAL)
    levels = ask.choices["levels"]
    out = generator.parse(CAPITAL, ask, hedge_reply(levels), 2, MODEL)
    assert [e.slot for e in out] == [f"hedge:{lv['name']}" for lv in levels]
    checker = Checker(PROMPTS)
    for example, level in zip(out, levels, strict=True):
        assert example.behavior == "hedge"
        assert example.seed_id == CAPITAL.id
        assert example.prompt == CAPITAL.prompt
        assert example.response == hedge_text(level)
        assert example.attributes["confidence"] == level["confidence"]
        assert example.attributes["level"] == level["name"]
        assert example.provenance["backend"] == "openai"
        assert example.provenance["model"] == MODEL
        assert example.provenance["template"] == "hedge/user.j2"
        assert example.provenance["system_template"] == "hedge/system.j2"
        assert checker.check(example, CAPITAL.response) == []
    assert len({e.id for e in out}) == len(out)


def test_hedge_parse_matches_levels_ignoring_case_and_drops_extra_variants():
    generator = Hedge(PROMPTS)
    ask = one_ask(generator, CAPITAL)
    levels = ask.choices["levels"]
    shouty = [{**lv, "name": f"  {lv['name'].upper()} "} for lv in levels]
    extra = {"name": "unrequested", "confidence": 0.2, "percent": 20}
    reply = hedge_reply([*shouty, extra])
    out = generator.parse(CAPITAL, ask, reply, 0, MODEL)
    assert [e.attributes["level"] for e in out] == [lv["name"] for lv in levels]


def test_hedge_parse_matches_a_capitalised_level_name_from_a_user_bank(tmp_path):
    shipped = Prompts(None).source(Hedge.bank)
    bank = tmp_path / "prompts" / "hedge" / "phrases.toml"
    bank.parent.mkdir(parents=True)
    for name in ("almost_certain", "fairly_confident", "unsure", "doubtful", "really_unsure"):
        shipped = shipped.replace(f'name = "{name}"', f'name = "{name.title()}"')
    bank.write_text(shipped, encoding="utf-8")
    generator = Hedge(Prompts(tmp_path / "prompts"))
    known = replace(CAPITAL, knowledge=Knowledge.measure(True, [True] * 10))
    ask = one_ask(generator, known)
    levels = ask.choices["levels"]
    assert all(lv["name"][0].isupper() for lv in levels)
    lower = [{**lv, "name": lv["name"].lower()} for lv in levels]
    out = generator.parse(CAPITAL, ask, hedge_reply(lower), 0, MODEL)
    assert [e.attributes["level"] for e in out] == [lv["name"] for lv in levels]


def test_hedge_parse_rejects_a_reply_missing_a_requested_level():
    generator = Hedge(PROMPTS)
    ask = one_ask(generator, CAPITAL)
    levels = ask.choices["levels"]
    missing = levels[-1]["name"]
    with pytest.raises(ReplyError, match=repr(missing)):
        generator.parse(CAPITAL, ask, hedge_reply(levels[:-1]), 0, MODEL)


def test_hedge_example_with_a_changed_fact_fails_the_check():
    generator = Hedge(PROMPTS)
    ask = one_ask(generator, CAPITAL)
    levels = ask.choices["levels"]

    def wrong(lv):
        return hedge_text(lv).replace("Lisbon", "Porto")

    out = generator.parse(CAPITAL, ask, hedge_reply(levels, wrong), 0, MODEL)
    assert all(
        "hedge_changed_reference" in Checker(PROMPTS).check(e, CAPITAL.response) for e in out
    )


# -- generators: parse, refusal ----------------------------------------------------------

UNKNOWN_ENTITY = {
    "kind": "unknown_entity",
    "prompt": "Who founded the Veltrano Institute?",
    "response": "I couldn't find any reliable information about the Veltrano Institute, "
    "so I can't say who founded it. Could it go by another name?",
    "contrast_prompt": "Who founded the Smithsonian Institution?",
    "contrast_response": "The Smithsonian Institution was founded in 1846 with a bequest "
    "from the British scientist James Smithson.",
    "entity": "Veltrano Institute",
}


def refusal_ask(kind="unknown_entity") -> Ask:
    return Refusal(PROMPTS).ask(CAPITAL, kind=kind, describe="a kind of refusal")


def refusal_reply(**changes):
    return Refusal.reply_model.model_validate({**UNKNOWN_ENTITY, **changes})


def test_refusal_parse_gives_a_checked_pair_sharing_one_pair_id():
    generator = Refusal(PROMPTS)
    out = generator.parse(CAPITAL, refusal_ask(), refusal_reply(), 1, MODEL)
    assert len(out) == 2
    refusal, contrast = out
    assert (refusal.behavior, contrast.behavior) == ("refusal", "contrast")
    assert refusal.pair_id is not None and refusal.pair_id == contrast.pair_id
    assert refusal.id != contrast.id
    assert refusal.slot == contrast.slot == "refusal"
    assert (refusal.prompt, refusal.response) == (
        UNKNOWN_ENTITY["prompt"],
        UNKNOWN_ENTITY["response"],
    )
    assert (contrast.prompt, contrast.response) == (
        UNKNOWN_ENTITY["contrast_prompt"],
        UNKNOWN_ENTITY["contrast_response"],
    )
    assert refusal.attributes["kind"] == contrast.attributes["kind"] == "unknown_entity"
    assert refusal.attributes["entity"] == "Veltrano Institute"
    for example in out:
        assert example.seed_id == CAPITAL.id
        assert example.provenance["backend"] == "openai"
        assert example.provenance["model"] == MODEL
        assert Checker(PROMPTS).check(example, CAPITAL.response) == []


def test_refusal_pairs_of_different_samples_have_different_pair_ids():
    generator = Refusal(PROMPTS)
    first = generator.parse(CAPITAL, refusal_ask(), refusal_reply(), 0, MODEL)
    second = generator.parse(CAPITAL, refusal_ask(), refusal_reply(), 1, MODEL)
    assert first[0].pair_id != second[0].pair_id
    assert {e.id for e in first}.isdisjoint(e.id for e in second)


def test_refusal_parse_strips_whitespace_and_accepts_the_kind_in_any_case():
    reply = refusal_reply(kind=" Unknown_Entity ", prompt=f"  {UNKNOWN_ENTITY['prompt']}\n")
    refusal, _ = Refusal(PROMPTS).parse(CAPITAL, refusal_ask(), reply, 0, MODEL)
    assert refusal.prompt == UNKNOWN_ENTITY["prompt"]


def test_refusal_of_another_kind_needs_no_entity():
    reply = refusal_reply(
        kind="false_premise",
        prompt="Why did Portugal win the 1950 World Cup?",
        response="The premise is mistaken: Uruguay won the 1950 World Cup, not Portugal.",
        contrast_prompt="Why did Uruguay win the 1950 World Cup?",
        contrast_response="Uruguay beat Brazil 2-1 in the deciding match at the Maracanã.",
        entity=None,
    )
    refusal, contrast = Refusal(PROMPTS).parse(
        CAPITAL, refusal_ask("false_premise"), reply, 0, MODEL
    )
    assert "entity" not in refusal.attributes
    assert refusal.attributes["kind"] == "false_premise"
    assert Checker(PROMPTS).check(refusal, None) == []
    assert Checker(PROMPTS).check(contrast, None) == []


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"kind": "false_premise"}, "kind"),
        ({"contrast_prompt": UNKNOWN_ENTITY["prompt"]}, "same"),
        (
            {
                "prompt": "Who founded  the Veltrano Institute?\n",
                "contrast_prompt": "  Who founded the   Veltrano\nInstitute? ",
            },
            "same",
        ),
        ({"entity": None}, "entity"),
        ({"entity": "Zorblax Academy"}, "entity"),
        ({"entity": "veltrano institute"}, "entity"),
    ],
    ids=[
        "wrong-kind",
        "same-prompt",
        "same-prompt-but-whitespace",
        "no-entity",
        "entity-not-in-prompt",
        "entity-in-other-case",
    ],
)
def test_refusal_parse_rejects_unusable_replies(changes, message):
    with pytest.raises(ReplyError, match=message):
        Refusal(PROMPTS).parse(CAPITAL, refusal_ask(), refusal_reply(**changes), 0, MODEL)


# -- generators: parse, near_miss --------------------------------------------------------

TRACE = (
    "Each box has 7 pens and there are 6 boxes. 6 * 7 = 48 pens. "
    "Wait, 6 * 7 is 42, not 48. So the shop sells 42 pens.\n#### 42"
)
NEAR_MISS = {
    "domain": "Reasoning",
    "response": TRACE,
    "mistake": "6 * 7 = 48",
    "correct": "42",
    "recovery": "Wait, 6 * 7 is 42, not 48.",
    "final_answer": "42",
}


def near_miss_reply(**changes):
    return NearMiss.reply_model.model_validate({**NEAR_MISS, **changes})


def test_near_miss_parse_locates_the_slip_and_recovery_and_passes_checks():
    generator = NearMiss(PROMPTS)
    ask = one_ask(generator, PENS)
    (example,) = generator.parse(PENS, ask, near_miss_reply(), 3, MODEL)
    assert (example.behavior, example.slot) == ("near_miss", "near_miss")
    assert example.prompt == PENS.prompt and example.response == TRACE
    slip, recovery = example.attributes["slip"], example.attributes["recovery"]
    assert TRACE[slip["start"] : slip["end"]] == "6 * 7 = 48" == slip["wrong"]
    assert slip["right"] == "42"
    assert TRACE[recovery["start"] : recovery["end"]] == NEAR_MISS["recovery"]
    assert slip["end"] <= recovery["start"]
    assert example.attributes["domain"] == "reasoning"
    assert example.attributes["final_answer"] == "42"
    assert example.provenance["backend"] == "openai"
    assert example.provenance["model"] == MODEL
    assert Checker(PROMPTS).check(example, PENS.response) == []


def test_near_miss_spans_index_the_stripped_response():
    generator = NearMiss(PROMPTS)
    ask = one_ask(generator, PENS)
    reply = near_miss_reply(response=f"\n\n  {TRACE}  \n", mistake=" 6 * 7 = 48 ")
    (example,) = generator.parse(PENS, ask, reply, 0, MODEL)
    slip = example.attributes["slip"]
    assert example.response == TRACE
    assert example.response[slip["start"] : slip["end"]] == "6 * 7 = 48"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"mistake": "6 * 7 = 49"}, "mistake is not in response"),
        ({"mistake": "  "}, "both be quoted"),
        ({"recovery": ""}, "both be quoted"),
        ({"recovery": "Wait, 6 * 7 is 42, not 48!"}, "recovery is not in response"),
        # the recovery quoted is in the text, but before the mistake
        ({"mistake": "So the shop sells 42 pens."}, "after the mistake"),
        ({"recovery": "Each box has 7 pens"}, "after the mistake"),
    ],
    ids=[
        "mistake-not-quoted",
        "mistake-blank",
        "recovery-blank",
        "recovery-not-quoted",
        "recovery-before-mistake",
        "recovery-at-start",
    ],
)
def test_near_miss_parse_rejects_unlocatable_quotes(changes, message):
    generator = NearMiss(PROMPTS)
    ask = one_ask(generator, PENS)
    with pytest.raises(ReplyError, match=message):
        generator.parse(PENS, ask, near_miss_reply(**changes), 0, MODEL)


def test_near_miss_checks_catch_a_cue_outside_the_recovery_and_a_wrong_final():
    generator = NearMiss(PROMPTS)
    ask = one_ask(generator, PENS)
    checker = Checker(PROMPTS)
    extra = TRACE.replace("So the shop", "Let me recheck. So the shop")
    (example,) = generator.parse(PENS, ask, near_miss_reply(response=extra), 0, MODEL)
    assert "near_miss_extra_slip" in checker.check(example, PENS.response)
    wrong = TRACE.replace("#### 42", "#### 41")
    (example,) = generator.parse(PENS, ask, near_miss_reply(response=wrong), 0, MODEL)
    assert "near_miss_wrong_final_answer" in checker.check(example, PENS.response)
    no_fix = near_miss_reply(correct="43")
    (example,) = generator.parse(PENS, ask, no_fix, 0, MODEL)
    assert "near_miss_no_recovery" in checker.check(example, PENS.response)


# -- keeps_content and same_final_answer -------------------------------------------------

COMMON = frozenset(w.lower() for w in PROMPTS.bank("checks.toml")["common_words"])
MARIA = "Maria buys 3 boxes of 12 pens, so she has 3 * 12 = 36 pens in total."
MARIA_HEDGE = (
    "I think Maria has 36 pens in total: she buys 3 boxes of 12 pens, and 3 * 12 = 36. "
    "I'm fairly confident."
)


def test_a_reworded_hedge_keeping_number_names_and_words_keeps_content():
    assert keeps_content(MARIA, MARIA_HEDGE, 0.5, COMMON)
    assert keeps_content(
        "Lisbon is the capital of Portugal.",
        "I believe the capital of Portugal is Lisbon, though I'm not completely sure.",
        0.5,
        COMMON,
    )


def test_the_reference_verbatim_keeps_content_even_reflowed():
    reference = "Lisbon is the capital\nof Portugal."
    assert keeps_content(reference, "I believe Lisbon is the capital of\n Portugal.", 1.0)


@given(st.text(min_size=1, max_size=200))
def test_any_reference_kept_verbatim_keeps_content(reference):
    assert keeps_content(reference, f"I believe {reference} (90% sure)", 1.0)


@pytest.mark.parametrize(
    "reference, response",
    [
        (MARIA, MARIA_HEDGE.replace("Maria", "Julia")),
        (
            "Lisbon is the capital of Portugal.",
            "I believe Porto is the capital of Portugal, but I'm not completely sure.",
        ),
        (
            "Lisbon is the capital of Portugal.",
            "Porto is the capital of Portugal, I believe.",  # the changed name opens it
        ),
        (MARIA, MARIA_HEDGE.replace("36", "38")),
    ],
    ids=["name-mid-sentence", "name-changed", "name-at-sentence-start", "final-number"],
)
def test_a_changed_name_or_final_number_does_not_keep_content(reference, response):
    assert not keeps_content(reference, response, 0.5, COMMON)


def test_too_few_shared_words_does_not_keep_content():
    reference = "Photosynthesis converts sunlight, water and carbon dioxide into glucose."
    response = "I believe plants make their food from light, probably."
    assert not keeps_content(reference, response, 0.5, COMMON)


def test_a_wrong_final_number_is_not_hidden_by_the_stated_confidence():
    reference = "7 + 2 = 9, so Tom has 9 apples."
    response = "I think Tom has 8 apples, since 7 + 2 = 8. I'm about 90% sure."
    assert final_answer(reference) == "9"
    assert not keeps_content(reference, response, 0.5, COMMON)


def test_a_final_number_grown_by_a_digit_does_not_keep_content():
    response = "I think Maria has 360 pens in total, as she buys 3 boxes of 12 pens."
    assert not keeps_content(MARIA, response, 0.5, COMMON)


def test_same_final_answer_for_numbers():
    trace = "6 * 7 = 48. Wait, 6 * 7 is 42. So 42 pens.\n#### 42"
    assert same_final_answer("42", PENS_REF, trace, 0)
    assert same_final_answer(" 42 ", PENS_REF, trace, 0)
    assert not same_final_answer("48", PENS_REF, trace, 0)  # not the reference's
    assert not same_final_answer("42", PENS_REF, trace.replace("#### 42", "#### 41"), 0)
    assert not same_final_answer("", PENS_REF, trace, 0)
    big = "12 * 100 = 1,200 pens.\n#### 1,200"
    assert same_final_answer("1,200", big, "It is 1,200.", 0)


def test_same_final_answer_for_text_must_be_in_reference_and_after_the_recovery():
    reference = "The capital of Australia is Canberra."
    trace = "The capital is Sydney. Wait, that's wrong: it is Canberra. So: Canberra."
    after = trace.index("So:")
    assert same_final_answer("Canberra", reference, trace, after)
    assert same_final_answer("canberra.", reference, trace, after)  # case, full stop
    assert not same_final_answer("Sydney", reference, trace, 0)  # not the reference's
    only_before = "Is it Canberra? Wait, hmm. The capital is Sydney."
    recovery_end = only_before.index("The capital")
    assert not same_final_answer("Canberra", reference, only_before, recovery_end)
    assert same_final_answer("Canberra", reference, only_before, 0)


def test_an_unknown_seed_asks_only_for_the_decline_and_pairs_it_with_its_known_partner():
    from generator.generators.refusal import RefusalReply

    partner = replace(
        Seed.make("What is the capital of Italy?", "Rome", id="known"),
        knowledge=Knowledge.measure(True, [True] * 9 + [False]),
    )
    unknown = replace(
        Seed.make("Who painted the Ostrell Triptych?", "Idris Varnholt", id="lost"),
        knowledge=Knowledge.measure(False, [False] * 10),
        partner=partner,
        model_answer="Leonardo da Vinci",
    )
    ask = one_ask(Refusal(PROMPTS), unknown)
    assert ask.choices["kind"] == "unknown_to_model"
    assert partner.prompt in ask.messages[1]["content"] and "Rome" in ask.messages[1]["content"]
    reply = RefusalReply(
        kind="unknown_to_model",
        prompt="(anything)",
        response="I don't know who painted it, and I'd rather not guess.",
        contrast_prompt="(anything)",
        contrast_response="(anything)",
    )
    refusal, contrast = Refusal(PROMPTS).parse(unknown, ask, reply, 0, MODEL)
    assert (refusal.prompt, refusal.response) == (unknown.prompt, reply.response)
    assert (contrast.prompt, contrast.response) == (partner.prompt, "Rome")
    assert refusal.pair_id == contrast.pair_id and contrast.behavior == "contrast"
    assert refusal.attributes["model_answer"] == "Leonardo da Vinci"
    assert contrast.attributes["contrast_seed_id"] == "known"
    assert refusal.provenance["model"] == MODEL
    checker = Checker(PROMPTS)
    assert checker.check(refusal, unknown.response) == []
    denied = replace(refusal, response="I couldn't find any record of that painting.")
    assert "unknown_declined_as_nonexistent" in checker.check(denied, unknown.response)
    # no partner left: skipped, so refusal:contrast stays 1:1
    alone = Refusal(PROMPTS).requests(replace(unknown, partner=None), random.Random(0))
    assert isinstance(alone, Skip) and alone.reason == "unknown_without_partner"


@pytest.mark.parametrize(
    "body",
    [{"x": float("nan")}, [1, 2], {"choices": []}, {"choices": ["text"]}, 3],
    ids=["nan", "list", "no-choices", "choice-not-object", "number"],
)
def test_a_200_that_is_not_a_completion_is_a_bad_response_not_a_crash(body):
    # Python's json reads NaN, so a server's odd JSON can hold one: the error still says
    # what came, in one line, and the request is retried as a garbled reply
    with pytest.raises(BadResponse, match="not a chat completion"):
        reply_value(body)
