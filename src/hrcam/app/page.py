"""The app's web page (Gradio) over an :class:`~.session.ExplainerSession`, and :func:`launch`.

The page: an image (upload, drop, paste, or one of the bundled photographs); the top-5
classes (click one to explain it) and a class box that completes any of the model's class
names; the low-res, high-res and refined CAMs side by side over the image, with the opacity,
the colour map and each map's value range stated under them; the refinement's options (the
preset first: choosing one sets the others); the step-by-step pipeline figure on demand; the
maps (``.npz``) and overlays (PNG) to download. An unreadable upload shows its one-line error
in the page, and the app goes on. A medical scan (NIfTI, DICOM, 16-bit PNG/TIFF) is uploaded
as a file; a volume is shown as three orthogonal slices through the refined map's maximum, and
three sliders move the point the slices cross.

Every handler returns the whole set of outputs; the page's events are ``input``/``release``
(a person's action), never ``change``, so setting a control from code starts no second run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import viz
from ..postprocess import RefineOptions
from ..postprocess.options import FOCAL_SCOPES, MERGE_BASES, MERGES, PRESETS, describe_changes
from .session import AppError, ExplainerSession, Views

__all__ = ["CMAPS", "OPTION_CONTROLS", "build_page", "launch"]

CMAPS = ("inferno", "turbo", "viridis", "magma", "jet")

# Refinement options the page shows: name -> (kind, label, extra); kinds: slider, radio.
OPTION_CONTROLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "roi_percentile": ("slider", "ROI percentile (of the low-res CAM)", {"minimum": 0, "maximum": 100, "step": 1}),
    "focal_scope": ("radio", "focal points", {"choices": list(FOCAL_SCOPES)}),
    "lower_percentile": ("slider", "lower edge bound (percentile)", {"minimum": 0, "maximum": 100, "step": 1}),
    "upper_percentile": ("slider", "upper edge bound (percentile)", {"minimum": 0, "maximum": 100, "step": 1}),
    "blur_size": ("slider", "blur (box side, px)", {"minimum": 1, "maximum": 15, "step": 2}),
    "merge": ("radio", "merge", {"choices": list(MERGES)}),
    "merge_base": ("radio", "merge with", {"choices": list(MERGE_BASES)}),
    "alpha": ("slider", "α (weight of the segment)", {"minimum": 0, "maximum": 1, "step": 0.05}),
}  # fmt: skip


def import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry calls
    try:
        import gradio as gr
    except ImportError as err:
        raise ImportError(
            f"`hrcam app` needs Gradio, which could not be imported ({err}); install it in this "
            'checkout with: pip install -c constraints.txt -e ".[app]" (or make app)'
        ) from err
    return gr


def options_from(preset: str, values: list) -> RefineOptions:
    """The options a preset and the page's controls (in :data:`OPTION_CONTROLS` order) say."""
    changes = dict(zip(OPTION_CONTROLS, values, strict=True))
    changes["blur_size"] = int(changes["blur_size"])
    try:
        return RefineOptions.preset(preset).replace(**changes)
    except ValueError as err:
        raise AppError(f"refinement options: {err}") from None


def control_values(options: RefineOptions) -> list:
    return [getattr(options, name) for name in OPTION_CONTROLS]


def caption(views: Views, opacity: float, cmap: str, differing: list[str]) -> str:
    """What the figure needs said: the class, the opacity, the colour map, the maps' ranges."""
    t = views.target
    low, high = views.ranges["low"], views.ranges["high"]
    changed = f" Changed from the preset: {'; '.join(differing)}." if differing else ""
    where = ""
    if views.point is not None:
        i, j, k = views.point
        where = (
            f" Slices across axes 0, 1 and 2 (top left, top right, bottom left) through voxel "
            f"({i}, {j}, {k}) of the network's volume."
        )
    return (
        f"**{t.name}** ({t.probability:.1%}).{where} Overlays at opacity {opacity:.2f}, colour map "
        f"`{cmap}`, each map scaled to its own range: low-res CAM [{low[0]:.3g}, {low[1]:.3g}], "
        f"high-res CAM [{high[0]:.3g}, {high[1]:.3g}], refined CAM [0, 1].{changed}"
    )


def differing_options(preset: str, options: RefineOptions) -> list[str]:
    """The options that differ from the chosen preset, in words (``merge: segment × base``)."""
    return describe_changes(options, preset)[1]


def colour_bar(cmap: str, width: int = 256, height: int = 14) -> np.ndarray:
    return np.repeat(viz.colour_table(cmap)[None, :: max(1, 256 // width)], height, axis=0)


class _Handlers:
    """The page's callbacks; each returns every output in :attr:`outputs` order."""

    def __init__(self, session: ExplainerSession, download_dir: Path) -> None:
        self.session = session
        self.download_dir = download_dir

    def _render(self, state, class_index, opacity, cmap, preset, values, *, top5=None):
        options = options_from(preset, values)
        point = state.get("point")
        views = self.session.views(
            state["key"], class_index, options, opacity=float(opacity), cmap=cmap,
            point=tuple(point) if point else None,
        )  # fmt: skip
        state = {**state, "class": class_index}
        text = caption(views, float(opacity), cmap, differing_options(preset, options))
        maps = [views.low, views.high, views.refined]
        return (
            state, top5, views.target.name, *maps, text, colour_bar(cmap), "",
            *self._sliders(state["key"], views.point),
        )  # fmt: skip

    def _sliders(self, key: str, point) -> list:
        """The three slice sliders: shown at ``point`` for a volume, hidden for an image."""
        gr = import_gradio()
        if point is None:
            return [gr.update(visible=False)] * 3
        shape = self.session.image(key).display.shape
        return [
            gr.update(minimum=0, maximum=n - 1, value=p, step=1, visible=True)
            for p, n in zip(point, shape, strict=True)
        ]

    @staticmethod
    def _failed(err: AppError, state, *, clear: bool = False):
        """The error in the status line; the rest as it was (or cleared, for a failed upload)."""
        keep = None if clear else import_gradio().skip()
        sliders = [import_gradio().update(visible=False)] * 3 if clear else [keep] * 3
        return (state, *([keep] * 7), f"⚠ {err}", *sliders)

    def scan(self, path, opacity, cmap, preset, *values):
        """A medical scan uploaded as a file (NIfTI, DICOM, 16-bit PNG/TIFF)."""
        if not path:
            return self._noop(None)
        path = path.get("path") if isinstance(path, dict) else path
        return self.image(path, opacity, cmap, preset, *values)

    def slice_moved(self, state, i, j, k, opacity, cmap, preset, *values):
        """A slider moved: the same volume's slices through the new point."""
        if not state:
            return self._noop(state)
        state = {**state, "point": [int(i), int(j), int(k)]}
        return self.redraw(state, opacity, cmap, preset, *values)

    def image(self, payload, opacity, cmap, preset, *values):
        if not payload:
            hidden = [import_gradio().update(visible=False)] * 3
            return None, None, None, None, None, None, "", None, "", *hidden
        path = payload.get("path") if isinstance(payload, dict) else payload
        name = Path(payload.get("orig_name") or path).stem if isinstance(payload, dict) else None
        try:
            loaded = self.session.load(path, name=name)
            top5 = {c.name: c.probability for c in loaded.top5}
            state = {"key": loaded.key, "class": loaded.top5[0].index}
            return self._render(
                state, loaded.top5[0].index, opacity, cmap, preset, values, top5=top5
            )
        except AppError as err:
            return self._failed(err, None, clear=True)

    def class_chosen(self, state, name, opacity, cmap, preset, *values):
        if not state or not name:
            return self._noop(state)
        try:
            index = self.session.class_index(name)
            top5 = {c.name: c.probability for c in self.session.image(state["key"]).top5}
            return self._render(state, index, opacity, cmap, preset, values, top5=top5)
        except AppError as err:
            return self._failed(err, state)

    def redraw(self, state, opacity, cmap, preset, *values):
        if not state:
            return self._noop(state)
        try:
            top5 = {c.name: c.probability for c in self.session.image(state["key"]).top5}
            return self._render(state, state["class"], opacity, cmap, preset, values, top5=top5)
        except AppError as err:
            return self._failed(err, state)

    def preset_chosen(self, state, opacity, cmap, preset):
        values = control_values(RefineOptions.preset(preset))
        return (*values, *self.redraw(state, opacity, cmap, preset, *values))

    def pipeline(self, state, cmap, preset, *values):
        if not state:
            return None, "⚠ load an image first"
        try:
            options = options_from(preset, values)
            views = self.session.views(state["key"], state["class"], options, cmap=cmap)
            figure = self.session.pipeline_figure(state["key"], views, cmap=cmap)
            return import_gradio().Image(value=figure, visible=True), ""
        except AppError as err:
            return None, f"⚠ {err}"

    def downloads(self, state, opacity, cmap, preset, *values):
        if not state:
            return None, "⚠ load an image first"
        try:
            options = options_from(preset, values)
            views = self.session.views(
                state["key"], state["class"], options, opacity=float(opacity), cmap=cmap
            )
            folder = Path(tempfile.mkdtemp(dir=self.download_dir))
            paths = [str(p) for p in self.session.export(state["key"], views, folder)]
            return import_gradio().File(value=paths, visible=True), ""
        except AppError as err:
            return None, f"⚠ {err}"

    @staticmethod
    def _noop(state):
        skip = import_gradio().skip()
        return (state, *([skip] * 11))


def build_page(session: ExplainerSession, *, examples: list[Path] | None = None):
    """The Gradio ``Blocks`` page over ``session`` (see the module docstring)."""
    gr = import_gradio()
    download_dir = Path(tempfile.mkdtemp(prefix="hrcam-app-"))
    h = _Handlers(session, download_dir)
    default = RefineOptions()
    backbone = session.explainer.backbone
    stride = backbone.feature_stride
    grid = "×".join(str(-(-n // stride)) for n in session.explainer.input_size)
    with gr.Blocks(title="hrcam") as page:
        gr.Markdown(
            "## hrcam: which pixels made the model decide\n"
            f"Model `{backbone.config.get('name', type(backbone).__name__)}`, "
            f"{len(session.class_names)} classes. Load an image; click a class to explain it."
        )
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                image = gr.Image(
                    type="filepath", label="image (upload, drop or paste)", sources=["upload", "clipboard"],
                    elem_id="hrcam-image",
                )  # fmt: skip
                scan = gr.File(
                    label="or a medical scan (NIfTI .nii/.nii.gz, DICOM .dcm, 16-bit PNG/TIFF)",
                    type="filepath", elem_id="hrcam-scan",
                )  # fmt: skip
                if examples:
                    gr.Examples(
                        [[str(p)] for p in examples], inputs=[image], label="bundled photographs"
                    )
                top5 = gr.Label(
                    num_top_classes=5, label="top-5 classes (click one)", elem_id="hrcam-top5"
                )
                chosen = gr.Dropdown(
                    choices=session.class_names, label="explain class (type to search)",
                    filterable=True, elem_id="hrcam-class",
                )  # fmt: skip
                status = gr.Markdown(elem_id="hrcam-status")
            with gr.Column(scale=3):
                with gr.Row():
                    maps = [
                        gr.Image(label=label, interactive=False, elem_id=f"hrcam-{key}")
                        for key, label in (
                            ("low", f"low-res CAM ({grid}, upsampled)"),
                            ("high", "high-res CAM"),
                            ("refined", "refined CAM"),
                        )
                    ]
                slices = _slice_sliders(gr)
                text = gr.Markdown(elem_id="hrcam-caption")
                bar = gr.Image(
                    label="colour map: low → high", interactive=False, height=40, show_label=True
                )
                with gr.Row():
                    opacity = gr.Slider(
                        0, 1, value=0.5, step=0.05, label="opacity", elem_id="hrcam-opacity"
                    )
                    cmap = gr.Dropdown(list(CMAPS), value=viz.DEFAULT_CMAP, label="colour map")
                with gr.Accordion("refinement options", open=False):
                    preset = gr.Radio(
                        sorted(PRESETS), value="hrcam", label="preset", elem_id="hrcam-preset"
                    )
                    controls = [
                        (gr.Slider if kind == "slider" else gr.Radio)(
                            label=label, value=getattr(default, name), elem_id=f"hrcam-{name}", **extra
                        )
                        for name, (kind, label, extra) in OPTION_CONTROLS.items()
                    ]  # fmt: skip
                with gr.Row():
                    show_pipeline = gr.Button("show the pipeline figure")
                    prepare = gr.Button("prepare downloads (maps .npz, overlays PNG)")
                pipeline = gr.Image(
                    label="the refinement, step by step", interactive=False, visible=False,
                    elem_id="hrcam-pipeline",
                )  # fmt: skip
                files = gr.File(
                    label="downloads", file_count="multiple", interactive=False, visible=False,
                    elem_id="hrcam-files",
                )  # fmt: skip
        outputs = [state, top5, chosen, *maps, text, bar, status, *slices]
        settings = [opacity, cmap, preset, *controls]
        image.change(h.image, [image, *settings], outputs, preprocess=False)
        scan.upload(h.scan, [scan, *settings], outputs)
        for slider in slices:
            slider.release(h.slice_moved, [state, *slices, *settings], outputs)
        top5.select(_on_label_select(h), [state, *settings], outputs)
        chosen.input(h.class_chosen, [state, chosen, *settings], outputs)
        for control in (opacity, *controls):
            (control.release if hasattr(control, "release") else control.input)(
                h.redraw, [state, *settings], outputs
            )
        for control in (cmap, *[c for c in controls if not hasattr(c, "release")]):
            control.input(h.redraw, [state, *settings], outputs)
        preset.input(h.preset_chosen, [state, opacity, cmap, preset], [*controls, *outputs])
        show_pipeline.click(h.pipeline, [state, cmap, preset, *controls], [pipeline, status])
        prepare.click(h.downloads, [state, *settings], [files, status])
    page.hrcam_download_dir = download_dir
    return page


def _slice_sliders(gr) -> list:
    """Three sliders, one per axis, that move the point a volume's slices cross (hidden until
    a volume is shown)."""
    with gr.Row():
        return [
            gr.Slider(0, 1, value=0, step=1, label=f"slice across axis {axis}", visible=False,
                      elem_id=f"hrcam-slice{axis}")
            for axis in range(3)
        ]  # fmt: skip


def _on_label_select(h: _Handlers):
    gr = import_gradio()

    def select(evt, state, opacity, cmap, preset, *values):
        value = evt.value
        name = value.get("label") if isinstance(value, dict) else value
        return h.class_chosen(state, name, opacity, cmap, preset, *values)

    # Gradio passes the clicked entry to the parameter annotated SelectData; the annotation
    # must be the class itself (this module's annotations are strings).
    select.__annotations__["evt"] = gr.SelectData
    return select


def launch(
    session: ExplainerSession,
    *,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    examples: list[Path] | None = None,
    block: bool = True,
    on_ready=None,
):
    """Serve the page on ``host:port`` (127.0.0.1: this machine only); returns ``(page, url)``.

    ``on_ready(url)`` is called once the server answers. ``block=True`` then serves until
    Ctrl-C; ``block=False`` returns with the server running (tests, notebooks): close it with
    ``page.close()``.
    """
    page = build_page(session, examples=examples)
    allowed = [str(Path(p).parent) for p in examples or []] + [str(page.hrcam_download_dir)]
    _, url, _ = page.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        prevent_thread_lock=True,
        show_error=True,
        quiet=True,
        ssr_mode=False,
        allowed_paths=allowed,
    )
    if on_ready is not None:
        on_ready(url)
    if block:
        try:
            page.block_thread()
        finally:
            page.close()
    return page, url
