"""``hrcam evaluate``: scoring by hand, splits, a tiny pets-like tree end to end, the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hrcam import export_model
from hrcam.cli import main
from hrcam.data.annotations import LocalizationDataset, LocalizationSample
from hrcam.evaluation import (
    LocalizationScores,
    RunResult,
    evaluate_localization,
    evenly_spaced,
    ground_truth,
    split_names,
    write_results,
)
from hrcam.evaluation.results_report import render_markdown
from hrcam.methods import CAMMethod

# Image sizes (height, width) of the fake set: none square, none the model's 32x32.
SIZES = [(40, 56), (48, 36), (44, 44), (36, 60), (52, 40), (40, 40), (46, 58)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_pets_tree(root: Path, *, broken: bool = True, empty: bool = True) -> Path:
    """images/ + trimaps/: a bright disc (1) with a 2-px boundary ring (3) on a dark noisy background (2)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "trimaps").mkdir()
    for k, (h, w) in enumerate(SIZES):
        yy, xx = np.mgrid[:h, :w]
        r = min(h, w) // 4
        cy, cx = rng.integers(r + 3, h - r - 3), rng.integers(r + 3, w - r - 3)
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        image = (rng.random((h, w, 3)) * 60).astype(np.uint8)
        image[d <= r] = 230
        trimap = np.full((h, w), 2, np.uint8)
        trimap[d <= r + 2] = 3
        trimap[d <= r - 2] = 1
        Image.fromarray(image).save(root / "images" / f"pet_{k}.png")
        Image.fromarray(trimap).save(root / "trimaps" / f"pet_{k}.png")
    if empty:  # an annotation without any object pixel
        Image.fromarray((rng.random((40, 48, 3)) * 60).astype(np.uint8)).save(
            root / "images" / "pet_empty.png"
        )
        Image.fromarray(np.full((40, 48), 2, np.uint8)).save(root / "trimaps" / "pet_empty.png")
    if broken:
        (root / "images" / "pet_broken.jpg").write_bytes(b"not a jpeg at all")
        Image.fromarray(np.full((40, 40), 2, np.uint8)).save(root / "trimaps" / "pet_broken.png")
    return root


@pytest.fixture
def pets_tree(tmp_path: Path) -> Path:
    return make_pets_tree(tmp_path / "pets")


class BrightPixels(CAMMethod):
    """A test-only "oracle": the image's brightness, which is the object here."""

    def __init__(self, sign: float = 1.0) -> None:
        super().__init__("bright" if sign > 0 else "dark")
        self.sign = sign

    def _compute(self, explainer, images, targets):
        return (self.sign * images.pixels.mean(dim=1)).float().cpu()


# -- scoring --------------------------------------------------------------------------------------


def _sample(
    mask: np.ndarray, ignore: np.ndarray | None = None, name: str = "s"
) -> LocalizationSample:
    from hrcam.data.annotations import boxes_from_mask

    h, w = mask.shape
    return LocalizationSample(Path(name), name, h, w, mask, ignore, boxes_from_mask(mask))


def test_scores_of_a_perfect_and_of_a_half_right_map():
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:20] = True
    truth = ground_truth(_sample(mask))
    perfect = LocalizationScores(has_masks=True)
    perfect.update(mask.astype(float), truth)
    m = perfect.compute()["metrics"]
    assert m["pxap"] == 1.0 and m["best_pixel_iou"] == 1.0 and m["max_box_acc_v2"] == 1.0
    assert (
        m["gt_known_loc"] == 1.0 and m["pointing_game"] == 1.0 and m["energy_pointing_game"] == 1.0
    )

    # Half the object plus as much background: IoU 50 / 150, precision 1/2 at every threshold.
    half = np.zeros((20, 30))
    half[5:15, 15:25] = 1.0
    scores = LocalizationScores(has_masks=True)
    scores.update(half, truth)
    m = scores.compute()["metrics"]
    assert m["best_pixel_iou"] == pytest.approx(50 / 150)
    assert m["pxap"] == pytest.approx(
        0.5 * 0.5 + (100 / 600) * 0.5
    )  # t=0 keeps all pixels: P = 1/6, R = 1
    assert m["energy_pointing_game"] == pytest.approx(0.5)
    assert m["max_box_acc"] == {"0.3": 1.0, "0.5": 0.0, "0.7": 0.0}
    assert scores.per_image["s"]["best_pixel_iou"] == pytest.approx(1 / 3)


def test_maps_are_resized_to_the_original_size():
    mask = np.zeros((30, 60), bool)
    mask[:, :30] = True
    truth = ground_truth(_sample(mask))
    small = np.zeros((8, 8))
    small[:, :4] = 1.0  # the left half at the network's size
    full = LocalizationScores.resize(small, truth)
    assert full.shape == (30, 60)
    scores = LocalizationScores(has_masks=True)
    scores.update(full, truth)
    assert scores.compute()["metrics"]["pxap"] > 0.99


def test_union_boxes_of_a_mask():
    mask = np.zeros((10, 10), bool)
    mask[1:3, 1:3] = mask[6:9, 5:8] = True
    assert ground_truth(_sample(mask)).boxes.tolist() == [[1, 1, 2, 2], [5, 6, 7, 8]]
    assert ground_truth(_sample(mask), mask_boxes="union").boxes.tolist() == [[1, 1, 7, 8]]


# -- splits and subsets ---------------------------------------------------------------------------


def test_split_halves_are_disjoint_cover_all_and_are_seeded():
    names = [f"img_{i:03d}" for i in range(101)]
    first, second = split_names(names, "first-half"), split_names(names, "second-half")
    assert set(first).isdisjoint(second) and sorted(first + second) == names
    assert len(first) == 51 and first == sorted(first)
    assert split_names(list(reversed(names)), "first-half") == first  # order of input irrelevant
    assert split_names(names, "first-half", seed=1) != first
    assert split_names(names, "all") == names
    # Mixed, not the first 51 names.
    assert first != names[:51]
    with pytest.raises(ValueError, match="split must be one of"):
        split_names(names, "half")


def test_evenly_spaced_subsets():
    assert evenly_spaced(list(range(10)), 4) == [0, 3, 6, 9]
    assert evenly_spaced(list(range(5)), 0) == list(range(5))
    assert evenly_spaced(list(range(5)), 9) == list(range(5))
    assert len(set(evenly_spaced(list(range(7)), 6))) == 6


# -- the evaluation on a tiny tree ----------------------------------------------------------------


def test_evaluation_end_to_end(tiny_model, pets_tree, tmp_path):
    dataset = LocalizationDataset(pets_tree)
    methods = [
        "low_res",
        "high_res",
        "refined",
        "refined:merge=multiply",
        "gradcam",
        "layercam_fused",
        "scorecam",
    ]
    methods += [BrightPixels(), BrightPixels(-1.0)]
    results = evaluate_localization(
        tiny_model,
        dataset,
        methods,
        batch_size=3,
        max_images={"scorecam": 3},
        faithfulness=2,
        faithfulness_steps=4,
        num_examples=2,
        progress=False,
    )
    run = results.run
    # The unreadable image is reported by name and skipped; the others are all scored.
    assert run.num_planned == 9 and run.num_scored == 8 and run.num_bad == 1
    assert results.bad_images[0].name == "pet_broken"
    assert "pet_broken.jpg" in results.bad_images[0].error
    assert run.threads == 1

    by_name = results.methods
    # The oracle finds the disc, its opposite does not: the scores can tell maps apart.
    assert by_name["bright"].metrics["pxap"] > 0.97
    assert by_name["bright"].metrics["best_pixel_iou"] > 0.85
    assert by_name["bright"].metrics["pointing_game"] == 1.0
    assert by_name["dark"].metrics["pxap"] < 0.5
    # The empty trimap adds negatives to PxAP but is skipped by per-image metrics.
    assert by_name["bright"].metrics["num_images"] == 8
    assert len(by_name["bright"].per_image["pet_empty"]) == 0
    assert len([v for v in by_name["bright"].per_image.values() if "best_pixel_iou" in v]) == 7

    # Score-CAM ran on an evenly spaced subset, and every method is also scored on it.
    assert by_name["scorecam"].subset and by_name["scorecam"].num_images == 3
    assert not by_name["gradcam"].subset and by_name["gradcam"].num_images == 8
    subset = results.subsets["3"]
    assert subset.of_methods == ["scorecam"] and set(subset.metrics) == set(by_name)
    assert all(m["num_images"] == 3 for m in subset.metrics.values())

    for name, r in by_name.items():
        assert r.timing.ms_per_image > 0 and np.isfinite(r.timing.ratio_to_forward), name
        # Faithfulness images: the first and last names, both in Score-CAM's subset too.
        assert r.faithfulness.num_images == 2, name
        f = r.faithfulness.values
        assert 0 <= f["deletion_auc"] <= 1 and 0 <= f["average_drop"] <= 1, name
        assert 0 <= f["adcc"] <= 1 and 0 <= f["coherency"] <= 1 and 0 <= f["complexity"] <= 1
        assert f["road_combined"] == pytest.approx((f["road_lerf"] - f["road_morf"]) / 2)
        lo, hi = r.faithfulness.intervals["road_combined"]
        assert lo <= f["road_combined"] <= hi, name
        # Localization intervals hold their value.
        lo, hi = r.intervals["pxap"]
        assert lo <= r.metrics["pxap"] <= hi, name
    # Paired differences from low_res, on the full-set methods only (Score-CAM ran on 3 images).
    diff = results.differences
    assert diff["reference"] == "low_res" and "scorecam" not in diff["methods"]
    d = diff["methods"]["bright"]["pxap"]
    assert d["difference"] == pytest.approx(
        by_name["bright"].metrics["pxap"] - by_name["low_res"].metrics["pxap"]
    )
    assert d["interval"][0] <= d["difference"] <= d["interval"][1]
    assert set(diff["methods"]["gradcam"]) >= {"pxap", "road_combined", "adcc", "insertion_auc"}
    assert results.forward.ms_per_image > 0
    assert 0 < results.cams.ms_per_image <= by_name["refined"].timing.ms_per_image
    assert len(results.examples) == 2 and set(results.examples[0].maps) == set(by_name)

    paths = write_results(results, tmp_path / "out", command="hrcam evaluate pets")
    for key in ("markdown", "json", "boxacc", "pr", "examples"):
        assert paths[key].stat().st_size > 1000, key
        assert Image.open(paths[key]).size[0] > 200 if paths[key].suffix == ".png" else True
    text = paths["markdown"].read_text()
    for name in by_name:
        assert f"| {name}" in text
    assert "| scorecam † |" in text and "3 (subset)" in text and "pet_broken" in text
    assert "| *explainer.cams (part of high_res, refined)* |" in text
    for title in (
        "### Localization and faithfulness",
        "### Faithfulness",
        "### Difference from `low_res`",
    ):
        assert title in text
    record = json.loads(paths["json"].read_text())  # strict JSON: NaN would not parse back
    assert record["methods"]["bright"]["per_image"]["pet_0"]["best_pixel_iou"] > 0.8
    assert len(record["methods"]["low_res"]["curves"]["pr"]["precision"]) == 101
    assert record["run"]["command"] == "hrcam evaluate pets"
    layers = record["methods"]["layercam_fused"]["settings"]["target_layers"]
    assert [layer.split(" (")[0] for layer in layers] == [
        "skip block1",
        "skip block2",
        "final features A",
    ]
    assert "- every peer: library=pytorch-grad-cam" in text
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic writes leave nothing behind
    again = RunResult.from_json(record)  # the file reads back into the same types
    assert again.methods["bright"].metrics["pxap"] == pytest.approx(
        by_name["bright"].metrics["pxap"]
    )
    assert render_markdown(again).count("| bright") == render_markdown(results).count("| bright")


def test_split_and_limit_choose_the_images(tiny_model, tmp_path):
    dataset = LocalizationDataset(make_pets_tree(tmp_path / "pets", broken=False))
    common = dict(batch_size=4, warmup=False, progress=False, num_examples=0)
    halves = [
        set(
            evaluate_localization(tiny_model, dataset, [BrightPixels()], split=s, **common)
            .methods["bright"]
            .per_image
        )
        for s in ("first-half", "second-half")
    ]
    assert halves[0].isdisjoint(halves[1]) and halves[0] | halves[1] == set(dataset.names)
    limited = evaluate_localization(tiny_model, dataset, [BrightPixels()], limit=3, **common)
    assert list(limited.methods["bright"].per_image) == evenly_spaced(dataset.names, 3)


def test_label_targets(tiny_model, tmp_path):
    root = make_pets_tree(tmp_path / "pets", broken=False, empty=False)
    rows = ["file,label"] + [f"pet_{k}.png,{k % 3}" for k in range(len(SIZES))]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    dataset = LocalizationDataset(root)
    results = evaluate_localization(
        tiny_model, dataset, ["low_res"], target="label", progress=False, num_examples=0
    )
    assert 0 <= results.run.top1_accuracy <= 1
    metrics = results.methods["low_res"].metrics
    assert 0 <= metrics["top1_loc"] <= metrics["gt_known_loc"]
    (root / "labels.csv").write_text("file,label\npet_0.png,7\n")
    with pytest.raises(ValueError, match="label 7 is not a class of the model"):
        evaluate_localization(
            tiny_model, LocalizationDataset(root), ["low_res"], target="label", progress=False
        )


def test_bad_arguments_are_refused(tiny_model, pets_tree, tiny_backbone):
    from hrcam import Explainer

    dataset = LocalizationDataset(pets_tree)
    with pytest.raises(ValueError, match="max_images names methods not in this run"):
        evaluate_localization(tiny_model, dataset, ["low_res"], max_images={"scorecam": 3})
    with pytest.raises(ValueError, match="needs the paper's expansion network"):
        evaluate_localization(Explainer(tiny_backbone), dataset, ["refined:mode=paper"])
    with pytest.raises(KeyError, match="unknown CAM method"):
        evaluate_localization(tiny_model, dataset, ["oracle"])


# -- the command line -----------------------------------------------------------------------------


def test_command_line(tiny_model, pets_tree, tmp_path, capsys):
    model_path = export_model(tiny_model, tmp_path / "tiny.safetensors")
    out = tmp_path / "eval"
    status = main([
        "evaluate", str(pets_tree), "--model", str(model_path), "-o", str(out),
        "--methods", "low_res,refined:focal_scope=local,merge=multiply", "--methods", "gradcam",
        "--refine-alpha", "0.7", "--threads", "1", "--batch-size", "4", "--no-progress",
    ])  # fmt: skip
    assert status == 1  # one unreadable image, reported
    captured = capsys.readouterr()
    assert "| refined:focal_scope=local,merge=multiply |" in captured.out
    assert "pet_broken" in captured.err
    record = json.loads((out / "results.json").read_text())
    assert list(record["methods"]) == [
        "low_res",
        "refined:focal_scope=local,merge=multiply",
        "gradcam",
    ]
    options = record["methods"]["refined:focal_scope=local,merge=multiply"]["settings"]["options"]
    assert (
        options["alpha"] == 0.7
        and options["focal_scope"] == "local"
        and options["merge"] == "multiply"
    )
    assert record["run"]["threads"] == 1
    for name in ("results.md", "boxacc_vs_threshold.png", "pr_curves.png", "examples.png"):
        assert (out / name).is_file()

    assert (
        main(["evaluate", str(pets_tree), "--model", str(model_path), "--max-images", "scorecam"])
        == 2
    )
    assert "METHOD=N" in capsys.readouterr().err
    bad = [
        "evaluate",
        str(pets_tree),
        "--model",
        str(model_path),
        "--faithfulness-metrics",
        "road,x",
    ]
    with pytest.raises(SystemExit) as info:  # argparse: a usage line and the one-line error
        main(bad)
    assert info.value.code == 2
    assert "unknown faithfulness metric 'x'; choose among deletion, drop, road, adcc" in (
        capsys.readouterr().err
    )


def test_the_commands_faithfulness_choices_are_the_libraries():
    from hrcam.commands.evaluate_command import FAITHFULNESS_CHOICES
    from hrcam.evaluation import FAITHFULNESS_METRICS

    assert FAITHFULNESS_CHOICES == FAITHFULNESS_METRICS


def test_paired_differences_from_a_chosen_reference(tiny_model, pets_tree):
    dataset = LocalizationDataset(pets_tree)
    methods = ["low_res", "refined", BrightPixels()]
    results = evaluate_localization(
        tiny_model, dataset, methods, batch_size=4, reference="bright", progress=False
    )
    diff = results.differences
    assert diff["reference"] == "bright" and set(diff["methods"]) == {"low_res", "refined"}
    d = diff["methods"]["refined"]["pxap"]
    by_name = results.methods
    assert d["difference"] == pytest.approx(
        by_name["refined"].metrics["pxap"] - by_name["bright"].metrics["pxap"]
    )
    with pytest.raises(ValueError, match="--reference 'gradcam' is not one of the methods run"):
        evaluate_localization(tiny_model, dataset, methods, reference="gradcam", progress=False)
