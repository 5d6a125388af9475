import pytest

from unstuck.textform import CONSTANTS, Cursor, TextFormError, number, tokenize


def test_tokens_with_and_without_dotted_names():
    kinds = [t.kind for t in tokenize("f(x=1, s='a', l=[2])", TextFormError)]
    assert kinds == ["NAME", "PUNCT", "NAME", "PUNCT", "NUMBER", "PUNCT", "NAME", "PUNCT",
                     "STRING", "PUNCT", "NAME", "PUNCT", "PUNCT", "NUMBER", "PUNCT", "PUNCT",
                     "END"]
    assert [t.text for t in tokenize("torch.adam", TextFormError, dotted_names=True)] == [
        "torch.adam", ""]
    with pytest.raises(TextFormError, match="unexpected character '.'"):
        tokenize("torch.adam", TextFormError)


@pytest.mark.parametrize("text,reason,position", [
    ("f('abc", "unterminated string", 2),
    ("f(1; 2)", "unexpected character ';'", 3),
])
def test_bad_characters_raise_the_given_error_type_with_a_caret(text, reason, position):
    class Mine(TextFormError):
        pass

    with pytest.raises(Mine) as info:
        tokenize(text, Mine)
    assert info.value.reason == reason and info.value.position == position
    assert str(info.value).splitlines()[-1] == "  " + " " * position + "^"


def test_numbers_and_constants():
    assert number("3") == 3 and isinstance(number("3"), int)
    assert number("-2") == -2 and number("1e-3") == 1e-3 and isinstance(number("2."), float)
    assert CONSTANTS == {"True": True, "False": False, "None": None}


def test_cursor_moves_and_points_errors_at_the_token():
    cursor = Cursor("f(1)")
    assert cursor.advance().text == "f" and cursor.at("(")
    assert cursor.expect("(", "after f").text == "("
    with pytest.raises(TextFormError, match=r"expected '\)' to close, got '1'") as info:
        cursor.expect(")", "to close")
    assert info.value.position == 2 and info.value.length == 1
    cursor.advance()
    cursor.advance()
    assert cursor.describe(cursor.token) == "the end of the text"
