"""lskd_plugins.strict_yaml: keys given twice, empty list items, repeated values, booleans as numbers."""

import pytest
import yaml

from lskd_plugins.errors import LskdError
from lskd_plugins.strict_yaml import check_list, is_int, is_number, load_yaml, split_list


def test_a_key_given_twice_names_the_key_and_both_lines():
    text = "seeds: 3\nimage:\n  data: digits\n  teacher: {epochs: 2}\n  data: other\n"
    with pytest.raises(LskdError) as err:
        load_yaml(text, "study.yaml")
    assert str(err.value) == (
        "lskd: error: study.yaml: key 'data' is given twice in one mapping (lines 3 and 5); keep one of them"
    )
    with pytest.raises(LskdError, match=r"key 'seeds' is given twice in one mapping \(lines 1 and 2\)"):
        load_yaml("seeds: 3\nseeds: 5\n")
    with pytest.raises(LskdError, match=r"key 'lr' is given twice .*lines 1 and 1"):
        load_yaml("common: {lr: 0.1, lr: 0.2}\n")


def test_the_same_key_in_different_mappings_and_valid_yaml_are_read_as_yaml_reads_them():
    text = "image:\n  common: {lr: 0.1}\n  teacher: {lr: 0.2}\nlist: [1, 2.5, true, null, x]\n"
    assert load_yaml(text) == yaml.safe_load(text)
    assert load_yaml("") is None
    with pytest.raises(yaml.YAMLError):
        load_yaml("a: [1, 2\n")
    with pytest.raises(yaml.YAMLError):  # only safe types
        load_yaml("a: !!python/object/apply:os.system ['true']\n")


def test_lists_refuse_empty_items_and_repeated_values():
    assert check_list([0.0, 0.1], "teacher_smoothing") == [0.0, 0.1]
    with pytest.raises(LskdError, match=r"teacher_smoothing gives 0.1 twice \(\[0.0, 0.1, 0.1\]\)"):
        check_list([0.0, 0.1, 0.1], "teacher_smoothing")
    with pytest.raises(LskdError, match="gives 1.0 twice"):  # 1 and 1.0 are one temperature
        check_list([1, 1.0], "temperatures")
    with pytest.raises(LskdError, match=r"kinds: item 2 of \['word', None\] is empty"):
        check_list(["word", None], "kinds")
    with pytest.raises(LskdError, match="item 1 of"):
        check_list([" ", "x"], "kinds")
    assert check_list([[1], [2]], "nested") == [[1], [2]]


def test_comma_lists_from_flags():
    assert split_list("1, 2,3", "--temps") == [1.0, 2.0, 3.0]
    for spec in ("1,,2", "1,2,", ",1"):
        with pytest.raises(LskdError, match=f"--temps '{spec}' has an empty item"):
            split_list(spec, "--temps")
    with pytest.raises(LskdError, match=r"--alphas '0,0' gives 0.0 twice"):
        split_list("0,0", "--alphas")
    with pytest.raises(LskdError, match="--temps is empty"):
        split_list(" ", "--temps")
    with pytest.raises(LskdError, match="takes comma-separated values.*got '1,x'"):
        split_list("1,x", "--temps")
    assert split_list("word,seq", "--kinds", str) == ["word", "seq"]


def test_booleans_are_not_numbers():
    assert is_number(3) and is_number(0.5) and is_int(0)
    assert not is_number(True) and not is_int(False) and not is_int(2.0)
    assert not is_number(float("nan")) and not is_number(float("inf")) and not is_number("3")
