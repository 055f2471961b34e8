#!/usr/bin/env python3
"""Is the text diff's target right in CLIP space? For red circles of both size classes, rotates each circle's CLIP
image embedding z toward the text diff "a red circle" → "a blue circle" (z_d = normalise(z_t − z_t0) scaled to ‖z‖,
z_θ = slerp(z, z_d, θ)) and reports which of the same circle's six palette renders z_θ is nearest (developer tool;
needs torch and transformers; docs/manipulations.md, "Where it fails: large circles").

  textdiff_clip_probe.py [DIR] [--theta 0.5] [--circles 10]

DIR defaults to the embedded model. Circles are rendered as spec/shapesworld.md draws them (4 × 4 supersampled
coverage on the 128 × 128 canvas), then box-filtered to the CLIP image size.
"""
import argparse
import numpy as np, torch
from transformers import CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

p = argparse.ArgumentParser()
p.add_argument("dir", nargs="?", default="Sources/UnCLIPShapesModel/shapes-unclip")
p.add_argument("--theta", type=float, default=0.5)
p.add_argument("--circles", type=int, default=10)
a = p.parse_args()

tokenizer = CLIPTokenizer.from_pretrained(f"{a.dir}/tokenizer")
text = CLIPTextModelWithProjection.from_pretrained(f"{a.dir}/text_encoder").float().eval()
vision = CLIPVisionModelWithProjection.from_pretrained(f"{a.dir}/image_encoder").float().eval()
size = vision.config.image_size
palette = {"red": (220, 40, 40), "orange": (245, 140, 30), "yellow": (235, 205, 35), "green": (45, 165, 70),
           "blue": (45, 90, 220), "purple": (145, 65, 185)}
mean, std = np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711])


def render(colour, s, cx, cy):
    n = 128 * 4
    ys, xs = np.mgrid[0:n, 0:n]
    inside = ((xs + 0.5) / 4 - cx) ** 2 + ((ys + 0.5) / 4 - cy) ** 2 <= (s / 2) ** 2
    coverage = inside.astype(float).reshape(128, 4, 128, 4).mean((1, 3))[..., None]
    image = 255 * (1 - coverage) + np.array(palette[colour]) * coverage
    f = 128 // size
    return image.reshape(size, f, size, f, 3).mean((1, 3))


def image_embeddings(images):
    x = np.stack([(i / 255 - mean) / std for i in images]).transpose(0, 3, 1, 2)
    with torch.no_grad():
        return vision(pixel_values=torch.tensor(x, dtype=torch.float32)).image_embeds


def text_embeddings(texts):
    ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        return text(input_ids=ids).text_embeds


def slerp(u, v, t):
    omega = torch.acos((u / u.norm() * v / v.norm()).sum().clamp(-1, 1))
    return (torch.sin((1 - t) * omega) * u + torch.sin(t * omega) * v) / torch.sin(omega)


t = text_embeddings(["a blue circle", "a red circle"])
direction = t[0] - t[1]
rng = np.random.default_rng(0)
names = list(palette)
for size_class, (lo, hi) in [("small", (22, 30)), ("large", (40, 52))]:
    nearest, to_blue, to_red = {}, [], []
    for _ in range(a.circles):
        s = rng.uniform(lo, hi)
        cx, cy = rng.uniform(4 + s / 2, 124 - s / 2, size=2)
        z = image_embeddings([render(c, s, cx, cy) for c in names])  # row 0: the red circle itself
        zt = slerp(z[0], direction / direction.norm() * z[0].norm(), a.theta)
        cos = torch.nn.functional.cosine_similarity(zt[None], z)
        best = names[int(cos.argmax())]
        nearest[best] = nearest.get(best, 0) + 1
        to_blue.append(float(cos[names.index("blue")]))
        to_red.append(float(cos[names.index("red")]))
    print(f"{size_class} circles: z_{a.theta:g} nearest render {nearest}; "
          f"mean cosine to the blue render {np.mean(to_blue):.3f}, to the red one {np.mean(to_red):.3f}")
