"""Momentum and the word cap, checked as properties over many notes, momenta and caps."""

from decimal import Decimal, ROUND_CEILING

from hypothesis import given, settings, strategies as st

from iml_core.diff import take_words, word_count, words, words_changed, word_diff
from iml_core.learner import enforce_revision, momentum_prefix, prefix_word_count

word = st.text(alphabet="abcdefgh<>&%()", min_size=1, max_size=6)
spacing = st.sampled_from([" ", "  ", "\n", " \n"])


@st.composite
def notes_text(draw, max_words=60):
    chosen = draw(st.lists(word, max_size=max_words))
    gaps = [draw(spacing) for _ in chosen]
    return "".join(w + g for w, g in zip(chosen, gaps, strict=False)).rstrip() if chosen else ""


momenta = st.decimals(min_value=0, max_value=1, places=2).map(float)


def expected_prefix_words(m: float, w: int, cap: int) -> int:
    return min(int((Decimal(str(m)) * w).to_integral_value(rounding=ROUND_CEILING)), cap)


@settings(max_examples=300, deadline=None)
@given(notes_text(), momenta, st.integers(min_value=1, max_value=80))
def test_prefix_is_the_first_ceil_m_w_words_unless_the_cap_is_smaller(notes, m, cap):
    prefix = momentum_prefix(notes, m, cap)
    n = expected_prefix_words(m, word_count(notes), cap)
    assert words(prefix) == words(notes)[:n]
    assert notes.startswith(prefix)


@settings(max_examples=300, deadline=None)
@given(notes_text(), notes_text(), momenta, st.integers(min_value=1, max_value=80))
def test_a_revision_keeps_exactly_the_required_prefix_and_the_cap(old, revised, m, cap):
    prefix = momentum_prefix(old, m, cap)
    result = enforce_revision(prefix, revised, cap)
    n = expected_prefix_words(m, word_count(old), cap)
    assert words(result.notes)[:n] == words(old)[:n]
    assert word_count(result.notes) <= cap
    assert result.prefix_words == n
    kept = words(revised)[:n] == words(old)[:n]
    assert result.kept_by_model == (kept if n else None)
    if kept:  # nothing the agent wrote is changed, only cut at the cap
        assert words(result.notes) == words(revised)[:cap]
    else:  # the rule: the prefix, then the agent's text
        assert words(result.notes) == (words(prefix) + words(revised))[:cap]


def test_momentum_zero_and_one():
    old = "alpha beta gamma delta"
    assert momentum_prefix(old, 0.0, 100) == ""
    assert momentum_prefix(old, 1.0, 100) == old
    assert momentum_prefix(old, 1.0, 2) == "alpha beta"  # the cap wins
    assert prefix_word_count(0.3, 10, 100) == 3  # not 4 from 0.30000000000000004 * 10


def test_take_words_keeps_the_authors_spacing():
    assert take_words("a  b\nc d", 3) == "a  b\nc"
    assert take_words("a b", 5) == "a b"
    assert take_words("", 2) == ""


def test_word_diff_marks_exactly_the_changed_words():
    segments = word_diff("the cat sat on the mat", "the dog sat on the red mat")
    inserted = [s.text.strip() for s in segments if s.op == "insert"]
    deleted = [s.text.strip() for s in segments if s.op == "delete"]
    assert "dog" in " ".join(inserted) and "red" in " ".join(inserted)
    assert deleted == ["cat"]
    assert "".join(s.text for s in segments if s.op != "insert") == "the cat sat on the mat"
    assert "".join(s.text for s in segments if s.op != "delete") == "the dog sat on the red mat"
    assert words_changed("a b c", "a b c") == 0
    assert words_changed("a b c", "x y") == 5
