#!/usr/bin/env python3
"""Reference values for Tests/UnCLIPEvaluationTests/FeatureDistanceTests.swift.

Writes Tests/UnCLIPEvaluationTests/Fixtures/feature_distances.json: two fixed feature sets and
  - the Frechet distance as pytorch-fid computes it (scipy.linalg.sqrtm of sigma1 @ sigma2, real part),
  - improved precision and recall with k = 3 (Kynkaanniemi et al. 2019, the reference implementation's rule:
    a point's radius is the distance to its k-th nearest neighbour in its own set, np.partition(d, k)[:, k],
    and a query is inside the manifold when it lies within some point's radius).

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install numpy scipy && /tmp/fx/bin/python Scripts/make_feature_distance_fixtures.py
"""
import json
import os

import numpy as np
from scipy import linalg


def frechet(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1.dot(s2))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def precision_recall(real, fake, k=3):
    def dist(x, y):
        return np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))

    def radii(x):
        return np.partition(dist(x, x), k, axis=1)[:, k]

    def inside(queries, manifold):
        return float((dist(queries, manifold) <= radii(manifold)[None, :]).any(axis=1).mean())

    return inside(fake, real), inside(real, fake)


rng = np.random.RandomState(0)
d = 6
real = rng.randn(80, d).astype(np.float32) @ rng.randn(d, d).astype(np.float32)
fake = (0.8 * rng.randn(70, d).astype(np.float32) + 0.3) @ rng.randn(d, d).astype(np.float32) * 0.5 + real[:70] * 0.5
real, fake = real.astype(np.float32), fake.astype(np.float32)
p, r = precision_recall(real.astype(np.float64), fake.astype(np.float64))
out = {
    "real": real.tolist(), "generated": fake.tolist(),
    "frechet_distance": frechet(real.astype(np.float64), fake.astype(np.float64)),
    "precision": p, "recall": r, "k": 3,
    "made_with": f"numpy {np.__version__}, scipy {__import__('scipy').__version__}",
}
path = os.path.join(os.path.dirname(__file__), "..", "Tests", "UnCLIPEvaluationTests", "Fixtures", "feature_distances.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print(path, out["frechet_distance"], p, r)
