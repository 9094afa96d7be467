"""Data layer: official MedMNIST files, synthetic twins and semantic masks."""

from medsymmflow.data.dataset import (
    MedMNISTData,
    MedMNISTDataset,
    fit_size,
    load_dataset,
    load_medmnist,
    shift_images,
    synthetic_twin,
    to_float,
    to_uint8,
)
from medsymmflow.data.masks import class_colours, labels_to_masks, mask_distances, masks_to_labels
from medsymmflow.data.medmnist import (
    ChecksumError,
    CorruptFileError,
    DataError,
    DatasetUnavailableError,
    data_root,
    dataset_info,
    fetch,
    flags_2d,
)
from medsymmflow.data.synthetic import make_synthetic

__all__ = [
    "ChecksumError",
    "CorruptFileError",
    "DataError",
    "DatasetUnavailableError",
    "MedMNISTData",
    "MedMNISTDataset",
    "class_colours",
    "data_root",
    "dataset_info",
    "fetch",
    "fit_size",
    "flags_2d",
    "labels_to_masks",
    "load_dataset",
    "load_medmnist",
    "make_synthetic",
    "mask_distances",
    "masks_to_labels",
    "shift_images",
    "synthetic_twin",
    "to_float",
    "to_uint8",
]
