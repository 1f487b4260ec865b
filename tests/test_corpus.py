from generator.corpus import CorpusWords


def test_common_words_are_those_written_in_lower_case_in_prose():
    corpus = CorpusWords()
    corpus.add_text("We played board games. Kant wrote it; see www.paris.fr, #lyon or my_var.")
    assert corpus.common("board") and corpus.common("Games")
    assert not corpus.common("kant") and "kant" in corpus  # seen, but only as a name
    for word in ("paris", "lyon", "my", "var"):  # in an address, a hashtag, an identifier
        assert not corpus.common(word)
