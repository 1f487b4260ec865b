import csv
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generator import io
from generator.errors import InputError
from generator.io import detect_shape, iter_seeds

from .conftest import write_jsonl


def seeds_of(path, **kw):
    return list(iter_seeds([path], **kw))


def test_alpaca_joins_instruction_and_input(tmp_path):
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {
                "instruction": "Name the river.",
                "input": "It flows through Cairo.",
                "output": "Nile",
            },
            {"instruction": "Say hi.", "input": "", "output": "Hi"},
        ],
    )
    a, b = seeds_of(path)
    assert a.prompt == "Name the river.\n\nIt flows through Cairo." and a.response == "Nile"
    assert b.prompt == "Say hi." and b.response == "Hi"


def test_chat_messages_take_last_user_turn_before_final_assistant(tmp_path):
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "first"},
                    {"role": "assistant", "content": "one"},
                    {"role": "user", "content": "second"},
                    {"role": "assistant", "content": "two"},
                ]
            }
        ],
    )
    (seed,) = seeds_of(path)
    assert (seed.prompt, seed.response) == ("second", "two")


def test_sharegpt_conversations(tmp_path):
    path = write_jsonl(
        tmp_path / "s.jsonl",
        [{"conversations": [{"from": "human", "value": "q?"}, {"from": "gpt", "value": "a."}]}],
    )
    (seed,) = seeds_of(path)
    assert (seed.prompt, seed.response) == ("q?", "a.")


@pytest.mark.parametrize(
    "columns", [("prompt", "completion"), ("question", "answer"), ("Question", "Best Answer")]
)
def test_column_pairs_any_capitalisation(tmp_path, columns):
    path = tmp_path / "c.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([columns[0], "Category", columns[1]])
        w.writerow(["Why is the sky blue?", "science", "Rayleigh scattering."])
    (seed,) = seeds_of(path)
    assert seed.prompt == "Why is the sky blue?" and seed.response == "Rayleigh scattering."


def test_column_flags_override_detection(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"q": "ask", "a": "tell", "prompt": "other"}])
    (seed,) = seeds_of(path, prompt_column="q", response_column="a")
    assert (seed.prompt, seed.response) == ("ask", "tell")


def test_no_prompt_column_lists_columns_and_flag(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"foo": "1", "bar": "2"}])
    with pytest.raises(InputError, match=r"columns: foo, bar.*--prompt-column"):
        seeds_of(path)


def test_ids_are_given_or_stable_content_hashes(tmp_path):
    rows = [{"id": 7, "question": "a", "answer": "b"}, {"question": "c", "answer": "d"}]
    path = write_jsonl(tmp_path / "x.jsonl", rows)
    first, second = seeds_of(path)
    assert first.id == "7"
    assert second.id == seeds_of(path)[1].id and len(second.id) == 16
    assert (
        second.id
        != seeds_of(write_jsonl(tmp_path / "y.jsonl", [{"question": "c", "answer": "other"}]))[0].id
    )


def test_limit_spans_files(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"prompt": f"p{i}"} for i in range(3)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": f"q{i}"} for i in range(3)])
    assert [s.prompt for s in iter_seeds([a, b], limit=4)] == ["p0", "p1", "p2", "q0"]


def test_json_list_streams_in_small_chunks(tmp_path, monkeypatch):
    rows = [{"question": f"q{i} " + "x" * (i * 7), "answer": str(i)} for i in range(50)]
    path = tmp_path / "l.json"
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    monkeypatch.setattr(io, "_CHUNK", 16)  # force items across chunk edges
    assert [s.response for s in seeds_of(path)] == [str(i) for i in range(50)]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.dictionaries(
            st.sampled_from(["question", "answer", "n", "extra"]),
            st.one_of(
                st.text(),
                st.integers(),
                st.floats(allow_nan=False, allow_infinity=False),
                st.none(),
            ),
        ),
        max_size=12,
    ),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_json_list_reader_matches_json_load(tmp_path_factory, rows, chunk):
    path = tmp_path_factory.mktemp("j") / "f.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    old = io._CHUNK
    io._CHUNK = chunk
    try:
        assert [row for _, row in io.records(path)] == rows
    finally:
        io._CHUNK = old


def test_parquet_and_save_to_disk(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list(
        [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}]
    )
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.save_to_disk(str(tmp_path / "disk"))
    for path in (tmp_path / "d.parquet", tmp_path / "disk"):
        assert [(s.prompt, s.response) for s in seeds_of(path)] == [("q1", "a1"), ("q2", "a2")]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"e\.jsonl: no rows found"),
        (b"\n\n  \n", r"e\.jsonl: no rows found"),
        (b'{"prompt": "a"}\n{"prompt": "b"\n{"prompt": "c"}\n', r"e\.jsonl:2: not valid JSON"),
        (b'{"prompt": "a"}\n{"prompt": "\xff\xfe"}\n', r"e\.jsonl:2: not UTF-8"),
        (b'{"prompt": "a"}\n[1, 2]\n', r"e\.jsonl:2: expected an object"),
        (b'{"prompt": 5}\n', r"e\.jsonl:1: field 'prompt' is int, expected text"),
        (b'{"prompt": "  "}\n', r"e\.jsonl:1: field 'prompt' is empty"),
    ],
)
def test_bad_jsonl_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "e.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        seeds_of(path)


def test_missing_file_and_unknown_type_and_plain_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        seeds_of(tmp_path / "nope.jsonl")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError, match=r"unknown file type '\.txt'"):
        seeds_of(tmp_path / "x.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="not one written by datasets"):
        seeds_of(tmp_path / "folder")


def test_json_list_item_that_is_not_an_object(tmp_path):
    path = tmp_path / "l.json"
    path.write_text('[{"prompt": "a"}, "oops"]')
    with pytest.raises(InputError, match=r"l\.json: item 2: expected an object"):
        seeds_of(path)


def test_csv_broken_quote_names_line(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text('question,answer\n"ok","fine"\n"broken,"x\n')
    with pytest.raises(InputError, match=r"b\.csv:\d+: .*quoting"):
        seeds_of(path)


def test_detect_shape_prefers_chat_then_alpaca():
    assert detect_shape(["messages", "id"], "f").name == "messages"
    shape = detect_shape(["instruction", "input", "output"], "f")
    assert (shape.name, shape.prompt, shape.input) == ("alpaca", "instruction", "input")
    assert detect_shape(["Question", "Best Answer"], "f").response == "Best Answer"


def test_byte_order_mark_is_not_data(tmp_path):
    bom = b"\xef\xbb\xbf"
    (tmp_path / "b.jsonl").write_bytes(bom + b'{"question": "q", "answer": "a"}\n')
    (tmp_path / "b.json").write_bytes(bom + b'[{"question": "q", "answer": "a"}]')
    (tmp_path / "b.csv").write_bytes(bom + b"question,answer\nq,a\n")
    for name in ("b.jsonl", "b.json", "b.csv"):
        assert [(s.prompt, s.response) for s in seeds_of(tmp_path / name)] == [("q", "a")]


def test_unpaired_surrogate_is_a_clear_error(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"question": "bad \\ud800 escape"}\n')
    with pytest.raises(InputError, match=r"s\.jsonl:1: .*surrogate"):
        seeds_of(path)


# --------------------------------------------------------------------------- values JSON
# cannot hold, and streams


DEEP = "[" * 200_000 + "]" * 200_000
# Good rows whose strings hold brackets and escaped quotes: skipping a bad item counts
# brackets, and must not count these.
TRICKY = {"question": 'Is "[" a bracket? \\"{', "answer": "yes ]]} \\"}


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_a_too_deep_or_too_long_value_is_a_row_error_in_jsonl_and_json_lists(
    tmp_path, monkeypatch, chunk
):
    monkeypatch.setattr(io, "_CHUNK", chunk)  # items across chunk edges, or one chunk
    good = json.dumps(TRICKY)
    bad = [
        '{"question": "q", "answer": ' + DEEP + "}",  # 200,000 levels: RecursionError
        '{"question": "q", "answer": "a", "x": ' + "[" * 150 + "]" * 150 + "}",  # parses
        DEEP,  # not even an object
        '{"question": "q", "answer": ' + "9" * 5000 + "}",  # Python refuses the int
        "9" * 5000,
    ]
    (tmp_path / "d.jsonl").write_text("\n".join([good, *bad, good]) + "\n")
    (tmp_path / "d.json").write_text("[" + ", ".join([good, *bad, good]) + "]")
    for name, where in (("d.jsonl", "d.jsonl:{}"), ("d.json", "d.json: item {}")):
        errors = []
        seeds = seeds_of(tmp_path / name, on_error=errors.append)
        assert [(s.prompt, s.response) for s in seeds] == [tuple(TRICKY.values())] * 2
        messages = [str(e) for e in errors]
        assert len(messages) == 5 and all(
            m.startswith(f"{tmp_path}/{where.format(n)}: ") for n, m in enumerate(messages, 2)
        )
        assert all("\n" not in m and "; " in m for m in messages)
        assert "nested more than 100 levels deep" in messages[0]
        assert "field 'x' is nested" in messages[1] and "levels deep" in messages[1]
        assert "more than 4,300 digits" in messages[3]
        with pytest.raises(InputError, match="levels deep"):
            seeds_of(tmp_path / name)  # without --on-error skip: the first one stops it


def test_a_deep_value_in_an_unterminated_json_list_is_a_file_error(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "_CHUNK", 64)
    path = tmp_path / "cut.json"
    path.write_text('[{"question": "q", "answer": "a"}, ' + "[" * 5000)
    with pytest.raises(InputError, match=r"cut\.json: not valid JSON"):
        seeds_of(path, on_error=lambda e: None)


# An answer is text, or a finite number (written as its text); nothing else is.
NOT_ANSWERS = [
    ("NaN", "field 'answer' is NaN"),
    ("Infinity", "field 'answer' is Infinity"),
    ("-Infinity", "field 'answer' is -Infinity"),
    ("1e999", "field 'answer' is Infinity"),  # a float too large is infinite too
    ('{"text": "Lisbon"}', "field 'answer' is dict, expected text"),
    ('["Lisbon"]', "field 'answer' is list, expected text"),
    ("true", "field 'answer' is bool, expected text"),
]


def test_an_answer_must_be_text_or_a_finite_number(tmp_path):
    row = '{"question": "What is the capital of Portugal?", "answer": %s}'
    jsonl = [row % '"Lisbon."', *(row % value for value, _ in NOT_ANSWERS), row % "42"]
    (tmp_path / "n.jsonl").write_text("\n".join(jsonl) + "\n")
    (tmp_path / "n.json").write_text("[" + ", ".join(jsonl) + "]")
    for name, where in (("n.jsonl", "n.jsonl:{}"), ("n.json", "n.json: item {}")):
        errors = []
        seeds = seeds_of(tmp_path / name, on_error=errors.append)  # --on-error skip
        assert [s.response for s in seeds] == ["Lisbon.", "42"]  # 42 is its text
        assert [str(e).split("; ")[0] for e in errors] == [
            f"{tmp_path}/{where.format(line)}: {message}"
            for line, (_, message) in enumerate(NOT_ANSWERS, 2)
        ]


def test_nan_anywhere_in_a_row_or_a_parquet_column_is_a_row_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "m.jsonl").write_text(
        '{"question": "q", "answer": "a", "meta": {"scores": [1.5, NaN]}}\n'
    )
    with pytest.raises(InputError, match=r"m\.jsonl:1: field 'meta\.scores\[1\]' is NaN"):
        seeds_of(tmp_path / "m.jsonl")
    rows = [
        {"question": "q1", "answer": 1.5, "w": 1.0},
        {"question": "q2", "answer": float("nan"), "w": 1.0},
        {"question": "q3", "answer": 2.0, "w": float("-inf")},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    errors = []
    assert [s.response for s in seeds_of(tmp_path / "p.parquet", on_error=errors.append)] == ["1.5"]
    assert [str(e).split(";")[0] for e in errors] == [
        f"{tmp_path}/p.parquet: row 2: field 'answer' is NaN",
        f"{tmp_path}/p.parquet: row 3: field 'w' is -Infinity",
    ]


def test_load_json_refuses_what_the_readers_refuse(tmp_path):
    assert io.load_json('[{"a": 1.5}]', "f.json") == [{"a": 1.5}]
    with pytest.raises(InputError, match=r"f\.json: item 2: field 'a' is NaN"):
        io.load_json('[{"a": 1}, {"a": NaN}]', "f.json")
    with pytest.raises(InputError, match=r"f\.json: holds a value nested more than 100"):
        io.load_json(f"[{DEEP}]", "f.json")
    with pytest.raises(InputError, match=r"f\.json: not valid JSON near character 4"):
        io.load_json("[1] x", "f.json")


def test_a_pipe_or_a_device_is_refused_before_it_is_opened(tmp_path):
    import os
    import subprocess
    import sys

    fifo = tmp_path / "seeds.jsonl"
    os.mkfifo(fifo)
    # A writer that would unblock a reader once: a reader that opened the pipe would get
    # the rows the first time and block forever the second.
    writer = subprocess.Popen(
        [sys.executable, "-c", f"open({str(fifo)!r}, 'w').write('{{\"prompt\": \"p\"}}\\n')"]
    )
    try:
        for path, kind in ((fifo, "a pipe"), (Path("/dev/null"), "a device")):
            with pytest.raises(InputError) as caught:
                io.records(path)
            assert str(caught.value) == (
                f"{path}: {kind}, not a regular file; hedgerow reads its input more than "
                "once, which a stream cannot do: save it to a file first and pass that"
            )
        assert writer.poll() is None  # nobody opened the pipe
    finally:
        writer.kill()
        writer.wait()
