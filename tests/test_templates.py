import pytest

from generator.errors import TemplateError
from generator.templates import Prompts, default_prompts_dir, init_templates


def test_every_shipped_file_loads():
    prompts = Prompts()
    names = prompts.names()
    assert {"hedge/offline.j2", "refusal/offline.j2", "near_miss/offline.j2", "checks.toml"} <= set(
        names
    )
    for name in names:
        if name.endswith(".toml"):
            assert prompts.bank(name)


def test_overlay_replaces_one_file_and_keeps_the_rest(tmp_path):
    (tmp_path / "hedge").mkdir()
    (tmp_path / "hedge" / "offline.j2").write_text("{{ opener }} | {{ answer }}")
    prompts = Prompts(tmp_path)
    assert prompts.render("hedge/offline.j2", opener="I think", answer="4") == "I think | 4"
    assert prompts.path("refusal/offline.j2").is_relative_to(default_prompts_dir())
    assert prompts.sha256("hedge/offline.j2") != Prompts().sha256("hedge/offline.j2")


def test_undefined_variable_names_template_and_line(tmp_path):
    (tmp_path / "hedge").mkdir()
    (tmp_path / "hedge" / "offline.j2").write_text("line one\n{{ nope }}")
    with pytest.raises(TemplateError, match=r"hedge/offline\.j2, line 2: 'nope' is undefined"):
        Prompts(tmp_path).render("hedge/offline.j2")


def test_sandbox_refuses_python_internals(tmp_path):
    (tmp_path / "t.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError, match="t.j2"):
        Prompts(tmp_path).render("t.j2")


def test_runtime_error_in_template_is_a_template_error(tmp_path):
    (tmp_path / "t.j2").write_text("{{ 1 // 0 }}")
    with pytest.raises(TemplateError, match=r"t\.j2"):
        Prompts(tmp_path).render("t.j2")


def test_seed_text_with_jinja_syntax_stays_data():
    out = Prompts().render(
        "hedge/offline.j2",
        opener="I think",
        closer="90%.",
        answer="{{ 7 * 7 }} {% if 1 %}x{% endif %}",
    )
    assert "{{ 7 * 7 }} {% if 1 %}x{% endif %}" in out and "49" not in out


def test_bad_toml_and_missing_folder(tmp_path):
    (tmp_path / "checks.toml").write_text("hedge = [")
    with pytest.raises(TemplateError, match=r"checks\.toml: .*fix the TOML"):
        Prompts(tmp_path).bank("checks.toml")
    with pytest.raises(TemplateError, match="not a folder"):
        Prompts(tmp_path / "absent")


def test_init_copies_defaults_without_overwriting(tmp_path):
    written = init_templates(tmp_path / "mine")
    assert (tmp_path / "mine" / "hedge" / "phrases.toml").is_file() and written
    (tmp_path / "mine" / "checks.toml").write_text("# mine")
    assert init_templates(tmp_path / "mine") == []
    assert (tmp_path / "mine" / "checks.toml").read_text() == "# mine"


def test_render_limits_keep_other_timers_and_cap_the_output(tmp_path):
    import signal

    (tmp_path / "a.j2").write_text("{{ 1 }}")
    (tmp_path / "big.j2").write_text(
        "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(18) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"
    )
    prompts = Prompts(tmp_path)
    previous = signal.signal(signal.SIGALRM, lambda *args: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        prompts.render("a.j2")  # a render does not cancel a timer someone else set
        assert 29 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    with pytest.raises(TemplateError, match=r"big\.j2: it rendered 2,097,152 characters"):
        prompts.render("big.j2")


def test_a_wrong_type_in_an_overlay_bank_is_one_line_naming_the_field_and_the_file(tmp_path):
    shipped = (default_prompts_dir() / "hedge" / "phrases.toml").read_text(encoding="utf-8")
    (tmp_path / "hedge").mkdir()
    overlay = tmp_path / "hedge" / "phrases.toml"
    overlay.write_text(shipped.replace("skip_prompt_starts = [", "skip_prompt_starts = 5\nx = ["))
    prompts = Prompts(tmp_path)
    with pytest.raises(TemplateError) as caught:
        prompts.check_banks(["hedge/offline.j2", "hedge/phrases.toml"])
    assert str(caught.value) == (
        "hedge/phrases.toml: skip_prompt_starts must be a list of strings, not an integer; "
        f"fix it in {overlay}"
    )
    overlay.write_text(shipped.replace('"write", "compose"', '"write", 5'))
    with pytest.raises(TemplateError, match=r"skip_prompt_starts \(item 2\) must be a string"):
        Prompts(tmp_path).bank("hedge/phrases.toml")
    overlay.write_text(shipped.replace("skip_prompt_starts = [", "skip_prompt_stars = ["))
    with pytest.raises(TemplateError, match=r"skip_prompt_stars is not a field .*did you mean"):
        Prompts(tmp_path).bank("hedge/phrases.toml")
    start = shipped.index("skip_prompt_starts = [")
    end = shipped.index("]", start) + 1
    overlay.write_text(shipped[:start] + shipped[end:])  # optional: the default
    assert Prompts(tmp_path).bank("hedge/phrases.toml")["skip_prompt_starts"] == []
