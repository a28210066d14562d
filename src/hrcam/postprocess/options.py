"""Every option of the refinement pipeline in one place; the defaults make hrcam's refined CAM.

:class:`RefineOptions` is a frozen dataclass: both implementations (:func:`hrcam.postprocess.refine`
and :func:`hrcam.postprocess.refine_batch`) read it, and the command line builds its
``--roi-percentile`` ... flags from the fields' ``metadata`` (see :mod:`.cli_args`).

Two defaults depend on the input size and are resolved by the pipeline, never by a global:
``num_points=None`` means ``round(sqrt(H))`` (15 for 224), ``max_hole_size=None`` means
``256 * H * W / 224**2`` rounded (256 at 224x224), where ``H x W`` is the high-res CAM's size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from numbers import Integral, Real

__all__ = [
    "DEFAULT_PRESET",
    "FILTERS",
    "PRESETS",
    "FOCAL_SCOPES",
    "MAXIMA_AREAS",
    "MERGES",
    "RefineOptions",
    "describe_changes",
    "describe_option",
    "resolve_focal_min_distance",
    "resolve_max_hole_size",
    "resolve_num_points",
]

FOCAL_SCOPES = ("global", "local")
MAXIMA_AREAS = ("small", "large")
MERGES = ("blend", "multiply", "gate")
MERGE_BASES = ("low", "high")
FILTERS = ("percentage", "threshold")

# The original fills holes up to 256 pixels in a 224x224 map; other sizes scale with the area.
_HOLE_SIZE_AT_224 = 256
_REFERENCE_AREA = 224 * 224


def _help(text: str, choices: tuple | None = None) -> dict:
    return {"help": text, "choices": choices} if choices else {"help": text}


@dataclass(frozen=True)
class RefineOptions:
    """Options of the refinement pipeline (paper section 2.3; original ``postprocessing.pipeline``).

    Example::

        opts = RefineOptions(focal_scope="local", merge="multiply")
        opts = dataclasses.replace(opts, alpha=0.7)   # options are immutable

    Raises ``ValueError`` naming the option and its allowed values when one is invalid.
    """

    roi_percentile: float = field(
        default=85.0,
        metadata=_help(
            "percentile of the upsampled low-res CAM above which pixels form the region of "
            "interest (85 keeps the top 15%); in [0, 100]"
        ),
    )
    focal_scope: str = field(
        default="global",
        metadata=_help(
            "where the seeds of region growing come from: the num_points highest pixels of the "
            "upsampled low-res CAM ('global') or its local maxima ('local')",
            FOCAL_SCOPES,
        ),
    )
    num_points: int | None = field(
        default=None,
        metadata=_help(
            "number of seeds for focal_scope='global'; default round(sqrt(H)) for a high-res "
            "CAM of height H (15 for 224)"
        ),
    )
    focal_min_distance: int | None = field(
        default=None,
        metadata=_help(
            "for focal_scope='global': the seeds lie at least this many pixels apart (greedy "
            "non-maximum suppression, as the paper's figure shows distinct points); default "
            "about half the side of each seed's share of the ROI (11 px at 224x224); 1 takes "
            "the num_points highest pixels, adjacent or not (the original code)"
        ),
    )
    maxima_areas: str = field(
        default="small",
        metadata=_help(
            "for focal_scope='local': one seed pixel at the centre of each low-res maximum "
            "('small') or the whole upsampled maximum cell ('large')",
            MAXIMA_AREAS,
        ),
    )
    maxima_threshold: float | None = field(
        default=None,
        metadata=_help(
            "for focal_scope='local': keep maxima of the [0, 1]-normalised low-res CAM at or above "
            "this value; default midway between the weakest and the strongest maximum"
        ),
    )
    blur_size: int = field(
        default=5,
        metadata=_help("side of the box filter that blurs the high-res CAM; odd, >= 1 (1 = none)"),
    )
    lower_percentile: float = field(
        default=0.0,
        metadata=_help("percentile of the edges inside the ROI that is the lower growing bound"),
    )
    upper_percentile: float = field(
        default=75.0,
        metadata=_help("percentile of the edges inside the ROI that is the upper growing bound"),
    )
    max_hole_size: int | None = field(
        default=None,
        metadata=_help(
            "largest hole (pixels) filled in the segment; default 256 scaled by H*W/224^2"
        ),
    )
    merge: str = field(
        default="gate",
        metadata=_help(
            "how the filled segment and the base map make the refined CAM: 'blend' (alpha*segment "
            "+ (1-alpha)*base), 'multiply' (segment*base), or 'gate' (base*(1-alpha+alpha*segment), "
            "hrcam's)",
            MERGES,
        ),
    )
    merge_base: str = field(
        default="high",
        metadata=_help(
            "the map the segment is merged with: the upsampled low-res CAM ('low', the paper) or "
            "the high-res CAM ('high', better when the high-res CAM is class-discriminative, as "
            "hrcam's guided one is)",
            MERGE_BASES,
        ),
    )
    alpha: float = field(
        default=0.2,
        metadata=_help(
            "weight of the segment: merge='blend' gives alpha*segment + (1-alpha)*base, "
            "merge='gate' base*(1-alpha+alpha*segment); in [0, 1]"
        ),
    )
    filter: str = field(
        default="percentage",
        metadata=_help(
            "how the masked image keeps pixels: the keep_percentage strongest of the refined CAM "
            "('percentage') or those above threshold ('threshold')",
            FILTERS,
        ),
    )
    keep_percentage: float = field(
        default=15.0,
        metadata=_help("for filter='percentage': share of pixels kept, in percent, in [0, 100]"),
    )
    threshold: float = field(
        default=0.6,
        metadata=_help(
            "for filter='threshold': keep pixels whose [0, 1]-normalised refined CAM exceeds this"
        ),
    )

    def __post_init__(self) -> None:
        _check_choice("focal_scope", self.focal_scope, FOCAL_SCOPES)
        _check_choice("maxima_areas", self.maxima_areas, MAXIMA_AREAS)
        _check_choice("merge", self.merge, MERGES)
        _check_choice("merge_base", self.merge_base, MERGE_BASES)
        _check_choice("filter", self.filter, FILTERS)
        _check_range("roi_percentile", self.roi_percentile, 0, 100)
        _check_range("lower_percentile", self.lower_percentile, 0, 100)
        _check_range("upper_percentile", self.upper_percentile, 0, 100)
        if self.lower_percentile > self.upper_percentile:
            raise ValueError(
                f"lower_percentile ({self.lower_percentile}) must not exceed upper_percentile "
                f"({self.upper_percentile})"
            )
        _check_range("alpha", self.alpha, 0, 1)
        _check_range("keep_percentage", self.keep_percentage, 0, 100)
        _check_range("threshold", self.threshold, 0, 1)
        if self.maxima_threshold is not None:
            _check_range("maxima_threshold", self.maxima_threshold, 0, 1, allow="or None (midway)")
        if self.num_points is not None:
            _check_int("num_points", self.num_points, 1, allow="or None (round(sqrt(H)))")
        if self.focal_min_distance is not None:
            _check_int("focal_min_distance", self.focal_min_distance, 1, allow="or None (auto)")
        if self.max_hole_size is not None:
            _check_int("max_hole_size", self.max_hole_size, 0, allow="or None (256 at 224x224)")
        _check_int("blur_size", self.blur_size, 1)
        if self.blur_size % 2 == 0:
            raise ValueError(f"blur_size must be an odd integer >= 1, got {self.blur_size}")

    @classmethod
    def preset(cls, name: str) -> RefineOptions:
        """Named option sets: ``"hrcam"`` (= ``RefineOptions()``, what every front-end uses:
        tuned on one half of pets-dev for hrcam's guided high-res CAM — grow through every pixel
        below the upper edge bound, and let the segment gate the high-res CAM) and ``"paper"``
        (the original code's values: grow between two edge percentiles, blend the segment with
        the upsampled low-res CAM)."""
        if name not in PRESETS:
            raise ValueError(f"refine preset must be one of {sorted(PRESETS)}, got {name!r}")
        return cls(**PRESETS[name])

    def replace(self, **changes) -> RefineOptions:
        """A copy with ``changes`` applied (validated); unknown names raise ``ValueError``."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise ValueError(f"unknown refine option(s) {unknown}; valid options are: {valid}")
        return dataclasses.replace(self, **changes)


def resolve_num_points(options: RefineOptions, height: int) -> int:
    """Number of global seeds: ``options.num_points`` or ``round(sqrt(height))`` (at least 1)."""
    if options.num_points is not None:
        return int(options.num_points)
    return max(1, round(math.sqrt(height)))


def resolve_focal_min_distance(options: RefineOptions, shape: tuple[int, ...], points: int) -> int:
    """Seeds' spacing: ``options.focal_min_distance`` or half the side of a seed's ROI share
    (a square's side in 2-D, a cube's in 3-D)."""
    if options.focal_min_distance is not None:
        return int(options.focal_min_distance)
    share = math.prod(shape) * (100.0 - options.roi_percentile) / 100.0 / max(1, points)
    side = math.sqrt(share) if len(shape) == 2 else share ** (1.0 / len(shape))
    return max(1, round(side / 2))


def resolve_max_hole_size(options: RefineOptions, *sides: int) -> int:
    """Largest hole to fill: ``options.max_hole_size`` or 256 scaled by the map's size over
    224² (its area in 2-D, its voxel count in 3-D)."""
    if options.max_hole_size is not None:
        return int(options.max_hole_size)
    return round(_HOLE_SIZE_AT_224 * math.prod(sides) / _REFERENCE_AREA)


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")


def _check_range(name: str, value, low: float, high: float, allow: str = "") -> None:
    ok = isinstance(value, Real) and not isinstance(value, bool) and low <= value <= high
    if not ok:
        extra = f" {allow}" if allow else ""
        raise ValueError(f"{name} must be a number in [{low}, {high}]{extra}; got {value!r}")


def _check_int(name: str, value, low: int, allow: str = "") -> None:
    if not (isinstance(value, Integral) and not isinstance(value, bool) and value >= low):
        extra = f" {allow}" if allow else ""
        raise ValueError(f"{name} must be an integer >= {low}{extra}; got {value!r}")


# Named option sets (see RefineOptions.preset). "hrcam", the fields' defaults, was chosen on the
# first half of pets-dev (`hrcam evaluate --split first-half`) and is reported on the second half
# (docs/results.md).
DEFAULT_PRESET = "hrcam"
PRESETS: dict[str, dict] = {
    "hrcam": {},
    "paper": {"lower_percentile": 25.0, "merge": "blend", "merge_base": "low", "alpha": 0.5},
}


_MERGE_WORDS = {
    "blend": "α·segment + (1 − α)·base",
    "multiply": "segment × base",
    "gate": "base × (1 − α + α·segment)",
}


# Each option's value in a user's words (describe_option).
_OPTION_WORDS = {
    "roi_percentile": lambda v: f"region of interest: the top {100 - v:g} % of the low-res CAM",
    "focal_scope": lambda v: (
        "seeds: " + ("the strongest pixels" if v == "global" else "the low-res CAM's local maxima")
    ),
    "num_points": lambda v: f"{v} seeds",
    "focal_min_distance": lambda v: f"seeds at least {v} px apart",
    "maxima_areas": lambda v: f"{'one pixel' if v == 'small' else 'the whole cell'} per maximum",
    "maxima_threshold": lambda v: f"maxima above {v:g} of the peak",
    "blur_size": lambda v: "no blur" if v == 1 else f"blur over {v}×{v} px",
    "lower_percentile": lambda v: f"growing through edges above the {v:g}th percentile",
    "upper_percentile": lambda v: f"growing through edges below the {v:g}th percentile",
    "max_hole_size": lambda v: f"holes up to {v} px filled",
    "merge": lambda v: f"merge: {_MERGE_WORDS.get(v, v)}",
    "merge_base": lambda v: f"merged with the {'low' if v == 'low' else 'high'}-res CAM",
    "alpha": lambda v: f"segment weight α = {v:g}",
    "filter": lambda v: (
        "masked image: "
        + ("the strongest pixels" if v == "percentage" else "pixels above a threshold")
    ),
    "keep_percentage": lambda v: f"masked image keeps the top {v:g} %",
    "threshold": lambda v: f"masked image keeps values above {v:g}",
}


def describe_option(name: str, value) -> str:
    """One option's value in a user's words, e.g. ``merge: segment × base``."""
    if value is None:
        return f"{name.replace('_', ' ')}: automatic"
    describe = _OPTION_WORDS.get(name)
    return describe(value) if describe else f"{name.replace('_', ' ')} {value}"


def describe_changes(
    options: RefineOptions | dict, preset: str | None = None
) -> tuple[str, list[str]]:
    """``(preset, changes)``: the preset ``options`` come from (the nearest, if not given) and,
    in words, every option that differs from it."""
    values = options if isinstance(options, dict) else dataclasses.asdict(options)
    names = [preset] if preset else list(PRESETS)
    best: tuple[str, list[str]] | None = None
    for name in names:
        base = dataclasses.asdict(RefineOptions.preset(name))
        changed = [describe_option(k, v) for k, v in values.items() if k in base and base[k] != v]
        if best is None or len(changed) < len(best[1]):
            best = (name, changed)
    return best
