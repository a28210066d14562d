import argparse
import dataclasses

import pytest

from hrcam.postprocess import RefineOptions
from hrcam.postprocess.cli_args import add_refine_arguments, refine_options_from_args
from hrcam.postprocess.options import resolve_max_hole_size, resolve_num_points


def test_the_paper_preset_is_the_original_pipelines_and_the_defaults_are_hrcams():
    o = RefineOptions.preset("paper")
    assert (o.roi_percentile, o.focal_scope, o.maxima_areas) == (85, "global", "small")
    assert (o.merge, o.merge_base, o.alpha, o.filter, o.keep_percentage, o.threshold) == (
        "blend",
        "low",
        0.5,
        "percentage",
        15,
        0.6,
    )
    assert (o.blur_size, o.lower_percentile, o.upper_percentile) == (5, 25, 75)
    # One definition of the refined CAM: the defaults are the hrcam preset, which differs from
    # the paper's in four options only.
    assert RefineOptions() == RefineOptions.preset("hrcam")
    differ = [
        f.name
        for f in dataclasses.fields(o)
        if getattr(o, f.name) != getattr(RefineOptions(), f.name)
    ]
    assert differ == ["lower_percentile", "merge", "merge_base", "alpha"]


def test_size_dependent_defaults():
    o = RefineOptions()
    assert resolve_num_points(o, 224) == 15  # round(sqrt(224)) = round(14.97)
    assert resolve_num_points(o, 1) == 1
    assert resolve_num_points(RefineOptions(num_points=3), 224) == 3
    assert resolve_max_hole_size(o, 224, 224) == 256
    assert resolve_max_hole_size(o, 448, 224) == 512
    assert resolve_max_hole_size(o, 512, 512) == 1337  # 256 * 512**2 / 224**2 = 1337.47
    assert resolve_max_hole_size(RefineOptions(max_hole_size=0), 224, 224) == 0


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("focal_scope", "everywhere", "'global', 'local'"),
        ("maxima_areas", "medium", "'small', 'large'"),
        ("merge", "add", "'blend', 'multiply', 'gate'"),
        ("filter", "top", "'percentage', 'threshold'"),
        ("roi_percentile", 101, "[0, 100]"),
        ("roi_percentile", float("nan"), "[0, 100]"),
        ("alpha", -0.1, "[0, 1]"),
        ("threshold", 2, "[0, 1]"),
        ("keep_percentage", -1, "[0, 100]"),
        ("maxima_threshold", 1.5, "[0, 1]"),
        ("num_points", 0, ">= 1"),
        ("num_points", 2.5, ">= 1"),
        ("max_hole_size", -1, ">= 0"),
        ("blur_size", 4, "odd"),
        ("blur_size", 0, ">= 1"),
        ("lower_percentile", 90, "must not exceed upper_percentile"),
    ],
)
def test_bad_option_names_option_and_allowed_values(name, value, expected):
    with pytest.raises(ValueError, match=name) as info:
        RefineOptions(**{name: value})
    assert expected in str(info.value)


def test_replace_validates_and_rejects_unknown_names():
    o = RefineOptions().replace(alpha=0.25)
    assert o.alpha == 0.25
    with pytest.raises(ValueError, match="alpha"):
        o.replace(alpha=3)
    with pytest.raises(ValueError, match="unknown refine option.*'colour'"):
        o.replace(colour="red")
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.alpha = 0.1


def test_every_field_has_help_for_the_command_line():
    for f in dataclasses.fields(RefineOptions):
        assert f.metadata.get("help"), f.name


def test_cli_flags_are_generated_from_the_dataclass():
    parser = argparse.ArgumentParser()
    add_refine_arguments(parser)
    args = parser.parse_args([])
    assert refine_options_from_args(args) == RefineOptions() == RefineOptions.preset("hrcam")
    paper = RefineOptions.preset("paper")
    assert refine_options_from_args(args, base=paper) == paper
    # The help shows where the two presets differ.
    assert "hrcam: gate, paper: blend" in " ".join(parser.format_help().split())

    args = parser.parse_args(
        "--roi-percentile 90 --focal-scope local --num-points 7 --maxima-threshold 0.3 "
        "--blur-size 3 --max-hole-size 10 --merge multiply --alpha 0.7 --filter threshold "
        "--threshold 0.5".split()
    )
    o = refine_options_from_args(args, base=paper)
    assert o == paper.replace(
        roi_percentile=90,
        focal_scope="local",
        num_points=7,
        maxima_threshold=0.3,
        blur_size=3,
        max_hole_size=10,
        merge="multiply",
        alpha=0.7,
        filter="threshold",
        threshold=0.5,
    )
    assert isinstance(o.num_points, int) and isinstance(o.roi_percentile, float)


def test_cli_rejects_bad_choices_and_values(capsys):
    parser = argparse.ArgumentParser()
    add_refine_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--merge", "add"])
    assert "blend" in capsys.readouterr().err
    args = parser.parse_args(["--alpha", "3"])
    with pytest.raises(ValueError, match="alpha"):
        refine_options_from_args(args)


def test_cli_prefix_keeps_flags_apart_from_other_commands():
    parser = argparse.ArgumentParser()
    parser.add_argument("--alpha", type=float, default=0.4)  # e.g. an overlay's opacity
    add_refine_arguments(parser, prefix="refine-")
    args = parser.parse_args(["--alpha", "0.9", "--refine-alpha", "0.2"])
    assert args.alpha == 0.9
    assert refine_options_from_args(args, prefix="refine-").alpha == 0.2


def test_options_are_described_in_words_against_their_preset():
    from hrcam.postprocess.options import describe_changes

    assert describe_changes(RefineOptions.preset("paper")) == ("paper", [])
    assert describe_changes(RefineOptions()) == ("hrcam", [])
    preset, changes = describe_changes(RefineOptions().replace(merge="multiply", alpha=0.7))
    assert preset == "hrcam" and changes == ["merge: segment × base", "segment weight α = 0.7"]
    # Against a preset named by the caller, even when another would be nearer.
    _, changes = describe_changes(RefineOptions.preset("paper").replace(roi_percentile=90), "hrcam")
    assert "region of interest: the top 10 % of the low-res CAM" in changes and len(changes) == 5
