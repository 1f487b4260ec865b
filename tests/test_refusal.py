import random

import pytest

from generator.checks import Checker
from generator.corpus import CorpusWords
from generator.generators import Context
from generator.generators.refusal import EntityRules, Refusal
from generator.templates import Prompts
from generator.values import Seed, Skip

WORD_PROBLEM = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes "
    "muffins with four. She sells the rest for $2 each. How much does she make?"
)


@pytest.fixture
def rules():
    return EntityRules(Prompts())


def best(rules, prompt):
    return rules.find(prompt)[0]


@pytest.mark.parametrize(
    "prompt, text, kind",
    [
        ("Who painted the Mona Lisa?", "Mona Lisa", "work"),
        ("What is the capital of France?", "France", "place"),
        ("When was Oxford University founded?", "Oxford University", "organization"),
        ("Tell me about Dr. Ada Lovelace.", "Dr. Ada Lovelace", "person"),
        ("Which sea does the Volga River reach?", "Volga River", "place"),
        ("What caused the Crimean War?", "Crimean War", "event"),
    ],
)
def test_finds_entity_and_kind(rules, prompt, text, kind):
    entity = best(rules, prompt)
    assert (entity.text, entity.kind) == (text, kind)


def test_names_keep_their_common_words_numerals_and_titles(rules):
    assert best(rules, "What is the population of New Zealand?").text == "New Zealand"
    assert rules.find("What does the word 'Serendipity' mean?") == []
    prompts = Prompts()
    from generator.generators.refusal import Fabricator

    fab = Fabricator(prompts, "refusal/phrases.toml", rules)
    war = best(rules, "What happened in World War II?")
    name = fab.fabricate(war, random.Random(1), None, "What happened in World War II?")
    assert name.endswith(" War II") and name.count(" ") == 2
    king = best(rules, "Who was Dr. Martin Luther King?")
    name = fab.fabricate(king, random.Random(1), None, "Who was Dr. Martin Luther King?")
    assert name.startswith("Dr. ") and "King" not in name


def test_decline_keeps_the_article():
    _, (refusal, _), _ = run("Tell me about the Treaty of Versailles.", "It ended a war.")
    assert f"the {refusal.attributes['entity']}" in refusal.response


def test_question_words_and_acronyms_are_not_entities(rules):
    assert rules.find("What is DNA made of?") == []
    assert rules.find("How do I boil an egg?") == []


def test_word_problem_is_self_contained_but_knowledge_question_depends(rules):
    janet = next(e for e in rules.find(WORD_PROBLEM) if e.text == "Janet")
    assert rules.why_not_dependent(WORD_PROBLEM, janet) == "self_contained"
    story = "Tom has a red kite and a blue kite. Which kite should he fly first?"
    tom = next(e for e in rules.find(story) if e.text == "Tom")
    assert rules.why_not_dependent(story, tom) == "self_contained"
    question = "Who was the first president of Kenya?"
    assert rules.why_not_dependent(question, best(rules, question)) is None


def test_entity_only_in_given_text_does_not_qualify(rules):
    prompt = "Summarize the following text.\n\nThe meeting in Geneva ran late."
    geneva = best(rules, prompt)
    assert rules.why_not_dependent(prompt, geneva) == "entity_in_given_text"


def run(prompt, answer, corpus=None, k=1):
    prompts = Prompts()
    seed = Seed.make(prompt, answer)
    ctx = Context(prompts, random.Random(3), corpus=corpus)
    return seed, Refusal(prompts).offline(seed, ctx, k), Checker(prompts)


def test_pair_shares_id_and_passes_checks():
    seed, out, checker = run("Who painted the Mona Lisa?", "Leonardo da Vinci painted it.")
    refusal, contrast = out
    assert (refusal.behavior, contrast.behavior) == ("refusal", "contrast")
    assert refusal.pair_id == contrast.pair_id
    assert "Mona Lisa" not in refusal.prompt and refusal.attributes["entity"] in refusal.prompt
    assert refusal.attributes["entity"] in refusal.response
    assert (contrast.prompt, contrast.response) == (seed.prompt, seed.response)
    assert checker.check(refusal, seed.response) == []
    assert checker.check(contrast, seed.response) == []


def test_fabricated_name_avoids_every_corpus_word():
    prompts = Prompts()
    bank = prompts.bank("refusal/phrases.toml")
    corpus = CorpusWords()
    # Put all but one possible name into the corpus: the generator must find the one left.
    left = bank["syllable_start"][0] + bank["syllable_middle"][0] + bank["syllable_end"][0]
    for s in bank["syllable_start"]:
        for m in bank["syllable_middle"]:
            for e in bank["syllable_end"]:
                if s + m + e != left:
                    corpus.add_text(s + m + e)
    found = set()
    for i in range(20):
        seed = Seed.make(f"What is the capital of France? ({i})", "Paris.")
        ctx = Context(prompts, random.Random(i), corpus=corpus)
        out = Refusal(prompts).offline(seed, ctx, 1)
        if isinstance(out, Skip):
            assert out.reason == "no_fresh_name"
        else:
            found.add(out[0].attributes["entity"])
    assert found == {left}


def test_k_pairs_have_distinct_names_and_pair_ids():
    _, out, _ = run("Who painted the Mona Lisa?", "Leonardo da Vinci painted it.", k=3)
    refusals = [e for e in out if e.behavior == "refusal"]
    assert len(refusals) == 3 == len({e.pair_id for e in out})
    assert len({e.attributes["entity"] for e in refusals}) == 3


def test_skips_carry_reasons():
    assert run(WORD_PROBLEM, "$18")[1].reason == "self_contained"
    assert run("how do magnets work?", "Fields.")[1].reason == "no_entity"
    assert run("Who painted the Mona Lisa?", None)[1].reason == "no_reference_answer"


# The entity rules on prompts of our own: units, concepts, documents, common phrases.
COMMON_TEXT = (
    "we played board games after dinner. quantum computing is hard. the founding fathers "
    "met. a silver lining helps. deep sea fish glow."
)


def corpus_of(*texts):
    corpus = CorpusWords()
    for text in texts:
        corpus.add_text(text)
    return corpus


def found(rules, prompt, corpus=None):
    entities = rules.find(prompt) if corpus is None else rules.find(prompt, corpus)
    return [(e.text, e.kind) for e in entities]


@pytest.mark.parametrize(
    "prompt",
    [
        "At what temperature does lead melt, in degrees Celsius?",
        "How much colder is 40 Kelvin than the freezing point of water?",
        "Why do engineers still quote heat in Rankine?",
        "Is 30 Brixel a lot of sugar for a syrup?",  # a made-up unit, known by the number
    ],
)
def test_units_are_not_entities(rules, prompt):
    assert found(rules, prompt) == []


@pytest.mark.parametrize(
    "prompt, text, kind",
    [
        ("Explain the main ideas of Tai Chi.", "Tai Chi", "concept"),
        ("What does the Peter Principle say about managers?", "Peter Principle", "concept"),
        ("Who proved Fermat's Last Theorem?", "Fermat's Last Theorem", "concept"),
        ("Describe the core beliefs of Stoicism.", "Stoicism", "concept"),
        ("Why was the Stamp Act repealed?", "Stamp Act", "work"),
        ("What did the Treaty of Tordesillas decide?", "Treaty of Tordesillas", "work"),
        ("When was the Meiji Constitution adopted?", "Meiji Constitution", "work"),
        ("Who is Bill Nye?", "Bill Nye", "person"),  # "Bill" heads no document here
        ("Where is San Marino's parliament?", "San Marino", "place"),
        ('What does the startup "Quillbase" sell?', "Quillbase", "organization"),
        ("Write a sorting loop in Rust.", "Rust", "name"),  # "in" alone says no place
        ("Who won the most medals at the 1936 Olympics?", "Olympics", "event"),  # no unit
    ],
)
def test_kind_comes_from_the_words_not_the_shape(rules, prompt, text, kind):
    assert found(rules, prompt)[0] == (text, kind)


def test_capitalised_common_words_are_not_names():
    rules = EntityRules(Prompts())
    corpus = corpus_of(COMMON_TEXT)
    assert found(rules, "Summarize recent progress in Quantum Computing.", corpus) == []
    assert found(rules, "Why are Board Games popular again?", corpus) == []
    assert found(rules, "Give me three facts about Deep Sea Fish.", corpus) == []
    # "the" makes common words a name; a title after "book" stays a work
    assert found(rules, "What did the Founding Fathers argue about?", corpus) == [
        ("Founding Fathers", "name")
    ]
    assert found(rules, 'Who wrote the book "Silver Lining"?', corpus) == [
        ("Silver Lining", "work")
    ]
    # a common word in it is not a person's name; names never written lower case are
    assert found(rules, "What happened to Harold Finch?", corpus) == [("Harold Finch", "person")]
    assert found(rules, "When did Silver Marquee open?", corpus)[0][1] != "person"


def test_sentence_starts_list_items_and_sentence_ends(rules):
    assert found(rules, "Which is a mammal?\n\nTrout, Heron, Otter") == []
    assert found(rules, "Define each term.\n\nGlaucoma and Hyperopia") == []
    assert found(rules, "Forest or desert: which is drier?") == []
    assert [t for t, _ in found(rules, "Who runs Zentrix Labs. In which city?")] == ["Zentrix Labs"]


def test_concept_and_document_refusals_keep_their_kind():
    _, (refusal, _), checker = run("Explain the main ideas of Tai Chi.", "Balance and flow.")
    assert refusal.attributes["entity_kind"] == "concept"
    assert " " not in refusal.attributes["entity"]  # no made-up given name
    assert "a concept called" in refusal.response
    _, (act, _), _ = run("Why was the Stamp Act repealed?", "Colonists protested it.")
    assert act.attributes["entity_kind"] == "work"
    assert act.attributes["entity"].endswith(" Act") and act.attributes["entity"] != "Stamp Act"
    assert checker.check(act, "Colonists protested it.") == []
