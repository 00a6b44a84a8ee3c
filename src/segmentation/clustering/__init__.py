"""Clusterers with a common contract, and the choice of k by a stated criterion.

Every clusterer can assign *new* customers:

* k-means / mini-batch k-means: nearest centroid; confidence is the distance margin
  ``1 - d_nearest / d_second`` (0 on the boundary, 1 at the centroid);
* GMM: the most probable component; confidence is its posterior probability;
* HDBSCAN: ``hdbscan.approximate_predict`` on the saved prediction data; confidence is its strength;
* agglomerative: nearest centroid of the fitted clusters (same margin as k-means);
* DBSCAN: the cluster of the nearest core point when it lies within ``eps``, else noise (-1);
  confidence is ``1 - distance / eps``.

Segment IDs are ordered by size (0 is the largest) so they read the same way across clusterers;
noise is always -1.

Modules: ``base`` (the contract, ``NOISE``, ``ClusterResult``), ``centroid``, ``gmm`` and ``density``
(the models), ``kinds`` (classes by kind), ``lloyd`` (streamed k-means refinement), ``silhouette``
and ``stability`` (the k search's two numbers: separation, and agreement of refits on subsamples) and
``search`` (fitting, with the k search and its rule, ``choose_k``). Stage outputs pickled before the split
name these classes as ``segmentation.clustering.<Name>``: the names below keep them loadable.
"""

from __future__ import annotations

from segmentation.clustering.base import NOISE, Clusterer, ClusterResult
from segmentation.clustering.centroid import (
    AgglomerativeClusterer,
    KMeansClusterer,
    MiniBatchKMeansClusterer,
)
from segmentation.clustering.density import DBSCANClusterer, HDBSCANClusterer
from segmentation.clustering.gmm import GMMClusterer
from segmentation.clustering.kinds import clusterer_from_state, refit_like
from segmentation.clustering.lloyd import lloyd_refine
from segmentation.clustering.search import fit_clusterer
from segmentation.clustering.silhouette import sampled_silhouette, sampled_silhouettes

__all__ = [
    "NOISE",
    "AgglomerativeClusterer",
    "ClusterResult",
    "Clusterer",
    "DBSCANClusterer",
    "GMMClusterer",
    "HDBSCANClusterer",
    "KMeansClusterer",
    "MiniBatchKMeansClusterer",
    "clusterer_from_state",
    "fit_clusterer",
    "lloyd_refine",
    "refit_like",
    "sampled_silhouette",
    "sampled_silhouettes",
]
