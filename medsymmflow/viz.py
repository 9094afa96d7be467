"""Figures shared by the notebooks: image grids, class balance, palettes, and the course's three
concept figures (the joint path, the palette geometry, the selective-prediction loop)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.utils import make_grid

from medsymmflow.data.dataset import MedMNISTData, to_float
from medsymmflow.data.masks import centre_separation, class_colours
from medsymmflow.flow.paths import SIGMA_MIN, ot_path


def to_display(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) in [0, 1] for ``imshow`` (gray stays 1 channel)."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()


def grid_image(images: torch.Tensor, nrow: int = 8, padding: int = 1) -> np.ndarray:
    """Tile (N, C, H, W) images in [-1, 1] into one (H', W', 3) array in [0, 1]."""
    grid = make_grid(
        images.detach().float().cpu().clamp(-1, 1),
        nrow=nrow,
        padding=padding,
        value_range=(-1, 1),
        normalize=True,
        pad_value=1.0,
    )
    return grid.permute(1, 2, 0).numpy()


def show_grid(images: torch.Tensor, nrow: int = 8, title: str = "", ax: plt.Axes | None = None) -> plt.Axes:
    """Draw :func:`grid_image` on ``ax`` (a new figure if None)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(nrow * 0.6 + 1, (len(images) // nrow + 1) * 0.6 + 0.5))
    ax.imshow(grid_image(images, nrow))
    ax.set_title(title)
    ax.axis("off")
    return ax


def class_grid(data: MedMNISTData, split: str = "train", per_class: int = 8, seed: int = 0) -> plt.Figure:
    """One row of random images per class, labelled with the class name and its count."""
    rng = np.random.default_rng(seed)
    labels, counts = data.labels(split), data.class_counts(split)
    rows = []
    for k in range(data.n_classes):
        chosen = rng.choice(np.flatnonzero(labels == k), size=min(per_class, counts[k]), replace=False)
        row = to_float(data.images(split)[np.sort(chosen)])
        if len(row) < per_class:  # keep the grid rectangular for rare classes
            row = torch.cat([row, torch.ones(per_class - len(row), *row.shape[1:])])
        rows.append(row)
    fig, ax = plt.subplots(figsize=(per_class * 0.75 + 2.5, data.n_classes * 0.75 + 0.6))
    ax.imshow(grid_image(torch.cat(rows), nrow=per_class))
    step = data.size + 1
    ax.set_yticks([step * (k + 0.5) for k in range(data.n_classes)])
    ax.set_yticklabels([f"{k}: {name[:28]} (n={counts[k]})" for k, name in enumerate(data.class_names)], fontsize=8)
    ax.set_xticks([])
    ax.set_title(f"{data.title}, {split} split", fontsize=10)
    return fig


def class_balance(datasets: list[MedMNISTData]) -> plt.Figure:
    """Bar charts of the share of each class per split, one panel per dataset."""
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.2), squeeze=False)
    for ax, data in zip(axes[0], datasets, strict=True):
        width = 0.27
        for offset, split in zip((-width, 0, width), ("train", "val", "test"), strict=True):
            counts = data.class_counts(split)
            ax.bar(np.arange(data.n_classes) + offset, counts / counts.sum(), width, label=split)
        ax.set_xticks(range(data.n_classes))
        ax.set_xlabel("class")
        ax.set_ylabel("share of split")
        ax.set_title(data.title, fontsize=9)
    axes[0, 0].legend()
    fig.tight_layout()
    return fig


def palette_strips(class_counts: range, mode: str = "rgb") -> plt.Figure:
    """One strip of class colours per K: what each class's semantic mask looks like
    (gray levels, on the paper's ±7.5 scale, drawn from black to white)."""
    if mode == "onehot":
        raise ValueError("one-hot masks have K channels, not a colour: there is no strip to draw")
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(class_counts) + 0.6))
    widest = max(class_counts)
    canvas = np.ones((len(class_counts), widest, 3))
    for row, k in enumerate(class_counts):
        colours = class_colours(k, mode).numpy()
        colours = (colours / np.abs(colours).max() + 1) / 2
        canvas[row, :k] = colours if colours.shape[1] == 3 else np.repeat(colours, 3, axis=1)
    ax.imshow(canvas, aspect="auto")
    ax.set_yticks(range(len(class_counts)))
    ax.set_yticklabels([f"K={k}" for k in class_counts])
    ax.set_xticks(range(widest))
    ax.set_xlabel("class index")
    ax.set_title(f"{mode.upper()} class colours for K classes")
    return fig


def palette_geometry(k: int, mode: str = "rgb") -> plt.Figure:
    """Where the K class centres sit and how far apart: RGB colours as points in the colour cube
    (gray levels on a line, one-hot centres as columns), and the matrix of distances
    ``||c_j - c_k||`` with the smallest, :func:`~medsymmflow.data.masks.centre_separation`."""
    centres = class_colours(k, mode).double()
    distances = torch.cdist(centres, centres).numpy()
    fig = plt.figure(figsize=(10, 3.8))
    if mode == "rgb":
        space = fig.add_subplot(1, 2, 1, projection="3d")
        points = centres.numpy()
        space.scatter(*points.T, c=(points + 1) / 2, s=80, edgecolors="k", depthshade=False)
        for index, point in enumerate(points):
            space.text(*point, f" {index}", fontsize=8)
        space.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1), xlabel="R", ylabel="G", zlabel="B")
        space.set_title("class colours in the colour cube")
    elif mode == "gray":
        space = fig.add_subplot(1, 2, 1)
        levels = centres[:, 0].numpy()
        space.scatter(levels, np.zeros(k), c=levels, cmap="gray", s=80, edgecolors="k")
        for index, level in enumerate(levels):
            space.annotate(str(index), (level, 0), textcoords="offset points", xytext=(0, 8), ha="center")
        space.set(yticks=[], xlabel="gray level (mask value)", title="class levels on one line")
    else:
        space = fig.add_subplot(1, 2, 1)
        space.imshow(centres.numpy().T, cmap="gray", aspect="auto")
        space.set(xticks=range(k), xlabel="class", ylabel="channel", title="class centres (one column per class)")
    matrix = fig.add_subplot(1, 2, 2)
    image = matrix.imshow(distances, cmap="viridis")
    for (i, j), value in np.ndenumerate(distances):
        matrix.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color="w")
    smallest = centre_separation(k, mode)
    matrix.set(xticks=range(k), yticks=range(k), title=f"{mode}, K = {k}: distances (smallest {smallest:.2f})")
    fig.colorbar(image, ax=matrix)
    fig.tight_layout()
    return fig


def joint_path(
    image: torch.Tensor,
    mask: torch.Tensor,
    noise_image: torch.Tensor,
    noise_mask: torch.Tensor,
    times: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0),
    sigma_min: float = SIGMA_MIN,
) -> plt.Figure:
    """The joint state ``[x_t, y_t]`` on one clock: the image row goes noise -> image,
    ``x_t = (1 - (1 - sigma_min) t) xi_x + t x``, while the mask row goes mask -> noise,
    ``y_t = (1 - (1 - sigma_min) t) y + t xi_y``; generation reads it left to right,
    classification right to left. Arguments are single (C, H, W) tensors in [-1, 1]."""
    t = torch.tensor(times, dtype=image.dtype)
    n = len(times)
    images = ot_path(noise_image.expand(n, *image.shape), image.expand(n, *image.shape), t, sigma_min).z_t
    masks = ot_path(mask.expand(n, *mask.shape), noise_mask.expand(n, *mask.shape), t, sigma_min).z_t
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.6))
    for column, time in enumerate(times):
        shown = to_display(images[column : column + 1])[0]
        axes[0, column].imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap="gray", vmin=0, vmax=1)
        axes[1, column].imshow(to_display(masks[column : column + 1])[0], vmin=0, vmax=1)
        axes[0, column].set_title(f"t = {time:g}")
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    axes[0, 0].set_ylabel("image $x_t$")
    axes[1, 0].set_ylabel("mask $y_t$")
    arrows = [
        ("generation: integrate t = 0 → 1", 0.06, 0.12, 0.9),
        ("classification: integrate t = 1 → 0", 0.01, 0.9, 0.12),
    ]
    for text, height, start, end in arrows:
        fig.text(0.51, height + 0.012, text, ha="center", fontsize=9)
        fig.add_artist(
            plt.matplotlib.patches.FancyArrowPatch(
                (start, height), (end, height), transform=fig.transFigure, arrowstyle="-|>", mutation_scale=12
            )
        )
    fig.suptitle("one state [x, y], one clock t: image and mask travel in opposite directions")
    fig.subplots_adjust(bottom=0.14, top=0.86, wspace=0.05, hspace=0.12)
    return fig


def selective_loop() -> plt.Figure:
    """The selective-prediction loop of chapter 5 as a diagram: one Euler step gives a mask, its
    distance to the nearest class colour is the doubt, and the doubtful cases go to a person."""
    fig, ax = plt.subplots(figsize=(11, 2.6))
    ax.set(xlim=(0, 11), ylim=(-0.3, 2.6))
    ax.axis("off")
    boxes = [
        (0.8, 1.6, "image $x$"),
        (2.9, 1.6, "one Euler step\nfrom $t = 1$"),
        (5.0, 1.6, "predicted mask\n$\\hat y$"),
        (7.1, 1.6, "doubt $u$ = distance\nto the nearest colour"),
        (9.4, 2.15, "$u \\leq$ threshold:\nanswer its class"),
        (9.4, 0.6, "$u >$ threshold:\nrefer to a clinician"),
    ]
    for x, y, text in boxes:
        ax.text(x, y, text, ha="center", va="center", fontsize=9, bbox={"boxstyle": "round", "fc": "w", "ec": "0.3"})
    for (x0, y0), (x1, y1) in [((1.45, 1.6), (2.05, 1.6)), ((3.75, 1.6), (4.3, 1.6)), ((5.7, 1.6), (6.05, 1.6))]:
        ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "-|>"})
    for y in (2.15, 0.6):
        ax.annotate("", (8.45, y), (8.15, 1.6), arrowprops={"arrowstyle": "-|>"})
    ax.text(
        5.5,
        -0.15,
        "sweep the threshold: accuracy on the answered share vs the share answered (coverage)",
        ha="center",
        fontsize=9,
        style="italic",
    )
    ax.set_title("selective prediction: answer when sure, refer the rest")
    return fig


def confusion_figure(matrix, class_names: list[str], title: str = "") -> plt.Figure:
    """A confusion matrix (rows: true class, columns: predicted) with counts."""
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(1.1 * len(class_names) + 2.5, 1.0 * len(class_names) + 2))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=[n[:14] for n in class_names]).plot(
        ax=ax, colorbar=False, cmap="Blues"
    )
    ax.set_title(title, fontsize=9)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    return fig


def accuracy_coverage_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "") -> plt.Figure:
    """Accuracy against coverage, one line per named curve."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, (coverage, accuracy) in curves.items():
        ax.plot(coverage, accuracy, label=name)
    ax.set_xlabel("coverage (share of inputs answered)")
    ax.set_ylabel("accuracy on answered inputs")
    ax.set_xlim(0, 1)
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def reliability_figure(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "", n_bins: int = 10, ax: plt.Axes | None = None
) -> plt.Figure:
    """Reliability diagram: accuracy against mean confidence per confidence bin, one line per
    named ``(confidence, correct)`` pair, with its ECE; the diagonal is perfect calibration."""
    from medsymmflow.uncertainty import expected_calibration_error, reliability_bins

    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4))
    fig = ax.figure
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
    for name, (confidence, correct) in curves.items():
        bins = reliability_bins(confidence, correct, n_bins)
        filled = bins["count"] > 0
        ece = expected_calibration_error(confidence, correct, n_bins)
        ax.plot(bins["confidence"][filled], bins["accuracy"][filled], "o-", label=f"{name}, ECE {ece:.3f}")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
