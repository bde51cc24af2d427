"""--prompts FILE readers and how conditioning turns into runs."""

from __future__ import annotations

import json

import pytest

from diffaccel.compare.models import Condition, LoadedModel
from diffaccel.compare.prompts import read_prompts


def test_each_format(tmp_path):
    (tmp_path / "p.txt").write_text("# a comment\na red fox\n\nthree cups\n")
    (tmp_path / "p.tsv").write_text("Prompt\tCategory\na red fox\tAnimals\nthree cups\tCounting\n")
    (tmp_path / "p.csv").write_text('id,text\n1,"a red fox, in snow"\n2,three cups\n')
    (tmp_path / "p.json").write_text(json.dumps([{"prompt_en": "a red fox"}, "three cups"]))
    (tmp_path / "q.json").write_text(json.dumps({"prompts": ["a red fox", "three cups"]}))
    assert read_prompts(tmp_path / "p.txt") == ["a red fox", "three cups"]
    assert read_prompts(tmp_path / "p.tsv") == ["a red fox", "three cups"]  # PartiPrompts' "Prompt" column
    assert read_prompts(tmp_path / "p.csv") == ["a red fox, in snow", "three cups"]  # the "text" column
    assert read_prompts(tmp_path / "p.json") == ["a red fox", "three cups"]
    assert read_prompts(tmp_path / "q.json") == ["a red fox", "three cups"]


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="--prompts"):
        read_prompts(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="holds no prompts"):
        read_prompts(tmp_path / "empty.txt")
    (tmp_path / "bad.json").write_text(json.dumps([{"caption_x": 1}]))
    with pytest.raises(ValueError, match="none of the fields"):
        read_prompts(tmp_path / "bad.json")


def test_condition_becomes_call_arguments_and_record_fields():
    model = LoadedModel(name="m", pipe=None, source="hub", conditions=[], fixed_kwargs={"height": 64})
    prompt = Condition("p0", "prompt", "a red fox", "a red fox")
    kwargs = model.call_kwargs(prompt, steps=7, seed=3, guidance_scale=4.5)
    assert kwargs["prompt"] == "a red fox" and kwargs["num_inference_steps"] == 7 and kwargs["height"] == 64
    assert kwargs["guidance_scale"] == 4.5 and kwargs["output_type"] == "np"
    assert kwargs["generator"].initial_seed() == 3 and kwargs["generator"].device.type == "cpu"
    assert "guidance_scale" not in model.call_kwargs(prompt, 7, 3, None)  # the pipeline's own default
    assert prompt.record_fields() == {"condition": "p0", "prompt": "a red fox", "class": None}
    every_class = Condition("all", "all-classes", None, "all")
    assert "class_labels" not in model.call_kwargs(every_class, 7, 3, None)  # zoo pipelines: one image per class
    assert every_class.record_fields()["class"] == "all"
    assert model.call_kwargs(Condition("c1", "class", 5, "5"), 7, 3, None)["class_labels"] == [5]
