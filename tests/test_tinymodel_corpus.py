"""What the tiny model's corpus teaches about tools, checked on the corpus itself (no training).

The engine tests (tests/test_tools.py) rely on these: a call names the city the question names,
an answer after a result repeats that result's condition, and a weather question with no tool
offered is refused; the chat behaviour the other tests rely on keeps enough samples.
"""

from __future__ import annotations

import json
import re
from collections import Counter

from duet.tinymodel import corpus

SAMPLES = corpus.samples(4000)
WEATHER_QUESTIONS = {q.format(city=c) for q in corpus.WEATHER_QUESTIONS for c in corpus.CITIES}
CALL = re.compile(r"<tool_call>\n(?P<json>.*)\n</tool_call>", re.DOTALL)


def test_a_call_names_the_city_of_the_question() -> None:
    calls = [s for s in SAMPLES if s.turn.answer.startswith("<tool_call>")]
    assert len(calls) > 300
    for sample in calls:
        assert sample.tools == (corpus.WEATHER_TOOL,) and sample.exchange is None
        call = json.loads(CALL.fullmatch(sample.turn.answer)["json"])
        assert call["name"] == "get_weather"
        assert f" {call['arguments']['city']}" in sample.turn.user


def test_an_answer_after_a_result_repeats_what_the_result_says() -> None:
    answered = [s for s in SAMPLES if s.exchange is not None]
    assert len(answered) > 300
    conditions = Counter()
    for sample in answered:
        result = json.loads(sample.exchange.result)
        assert sample.turn.answer == f"It is {result['condition']} in {result['city']} right now."
        assert json.loads(sample.exchange.call["function"]["arguments"]) == {"city": result["city"]}
        conditions[result["condition"]] += 1
    # Every condition is seen often: the answer must come from the result, not from habit.
    assert set(conditions) == set(corpus.CONDITIONS)
    assert min(conditions.values()) > 30


def test_without_a_tool_the_weather_question_is_refused() -> None:
    refused = [s for s in SAMPLES if s.turn.answer.startswith("I cannot look up the weather")]
    assert len(refused) > 50
    assert all(not s.tools and s.turn.user in WEATHER_QUESTIONS for s in refused)


def test_offered_the_tool_other_prompts_keep_their_answers() -> None:
    other = [
        s
        for s in SAMPLES
        if s.tools and s.exchange is None and not s.turn.answer.startswith("<tool_call>")
    ]
    assert len(other) > 50
    assert all(s.turn.user not in WEATHER_QUESTIONS for s in other)


def test_the_chat_prompts_the_other_tests_use_keep_their_samples() -> None:
    counts = Counter(s.turn.user for s in SAMPLES if not s.tools)
    for turn in corpus.CANNED:
        assert counts[turn.user] > 150, turn.user


def test_the_template_renders_the_offered_tool_into_the_system_turn() -> None:
    from test_tokenizer import render

    sample = next(s for s in SAMPLES if s.exchange is not None and s.system)
    prompt = render(corpus.messages(sample), tools=list(sample.tools), add_generation_prompt=True)
    assert prompt.startswith(f"<|im_start|>system\n{sample.system}\n\n# Tools\n")
    assert json.dumps(corpus.WEATHER_TOOL) in prompt
    assert f"<tool_response>\n{sample.exchange.result}\n</tool_response>" in prompt
