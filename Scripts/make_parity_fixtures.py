#!/usr/bin/env python3
"""Generate the unCLIP parity fixtures (tiny random pipelines, recorded noise and intermediates).

Builds several tiny, randomly initialised unCLIP pipelines with diffusers' and transformers' own classes,
saves each one as a diffusers-layout directory, runs it once while recording every noise draw and every
intermediate tensor, and then proves the recording is complete: the pipeline is rebuilt from the saved
files, the recorded noise is replayed, and every intermediate and the final image must come out bit-identical.

Output: Tests/UnCLIPModelsTests/Fixtures/parity/<case>/ (see README.md written beside the cases).

    python3 Scripts/make_parity_fixtures.py            # all cases, default output folder
    python3 Scripts/make_parity_fixtures.py --bpe PATH # use a local bpe_simple_vocab_16e6.txt.gz

The real CLIP BPE merges come from open_clip's `bpe_simple_vocab_16e6.txt.gz`. Without --bpe the script runs
`pip download --no-deps open_clip_torch==3.3.0` into a temporary folder and reads the file from the wheel.

Only needed to (re)generate fixtures; nothing here is a runtime dependency of the Swift package.
"""

from __future__ import annotations

import argparse
import copy
import functools
import gzip
import hashlib
import inspect
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch

import diffusers
import safetensors
import transformers
from diffusers import PriorTransformer, UNet2DConditionModel, UNet2DModel, UnCLIPScheduler
from diffusers.pipelines.deprecated.unclip import pipeline_unclip, pipeline_unclip_image_variation
from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel
from diffusers.schedulers import scheduling_unclip
from safetensors.torch import save_file
from transformers import (
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from clip_bytes import bytes_to_unicode  # Scripts/, the script's own folder

try:  # transformers 5 without torchvision: the PIL backend is the reference (spec §5.3).
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:  # transformers 4
    from transformers import CLIPImageProcessor

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "Tests" / "UnCLIPModelsTests" / "Fixtures" / "parity"
OPEN_CLIP_VERSION = "3.3.0"
STAGES = ("prior", "decoder", "super_res")

# ------------------------------------------------------------------------------------------------
# Tokenizer files (CLIP BPE format)
# ------------------------------------------------------------------------------------------------


def load_bpe_merges(bpe_gz: Path) -> list[tuple[str, str]]:
    """Returns CLIP's 48 894 merges, exactly as open_clip's SimpleTokenizer slices them."""
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    out = [tuple(m.split()) for m in merges]
    assert len(out) == 48894 and all(len(m) == 2 for m in out)
    return out


def clip_vocab(merges: list[tuple[str, str]], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Builds a CLIP-format vocabulary of `vocab_size` entries from the first merges (real CLIP when 49408)."""
    n_merges = vocab_size - 512 - 2
    assert 0 <= n_merges <= len(merges)
    used = merges[:n_merges]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in used]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == vocab_size, "merge results must be unique"
    return vocab, used


def write_tokenizer(folder: Path, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    """Writes vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json (Karlo: pad "!")."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "!",
        "unk_token": "<|endoftext|>",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    config = dict(
        special,
        add_prefix_space=False,
        do_lower_case=True,
        errors="replace",
        model_max_length=77,
        tokenizer_class="CLIPTokenizer",
    )
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def fetch_bpe(explicit: str | None, workdir: Path) -> Path:
    """Locates bpe_simple_vocab_16e6.txt.gz: the given .gz, the given open_clip wheel, or one pip downloads."""
    if explicit and not explicit.endswith(".whl"):
        return Path(explicit)
    if explicit:
        wheel = Path(explicit)
    else:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"open_clip_torch=={OPEN_CLIP_VERSION}", "-d", str(workdir)],
            check=True,
        )
        wheel = next(workdir.glob("open_clip_torch-*.whl"))
    target = workdir / "bpe_simple_vocab_16e6.txt.gz"
    with zipfile.ZipFile(wheel) as z:
        target.write_bytes(z.read("open_clip/bpe_simple_vocab_16e6.txt.gz"))
    return target


# ------------------------------------------------------------------------------------------------
# Model construction
# ------------------------------------------------------------------------------------------------


def randomize_constant_parameters(model: torch.nn.Module, seed: int) -> None:
    """Refills every parameter whose elements are all equal (norm scales and biases, zero-initialised
    embeddings, clip_mean/clip_std, the CFG null embedding) with random values, so that a port that
    drops an affine term, swaps weight and bias or ignores an embedding cannot pass by accident."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            flat = p.reshape(-1)
            if flat.numel() == 0 or not bool(torch.all(flat == flat[0])):
                continue
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("clip_std"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))  # a std must stay positive
            elif float(flat[0]) == 1.0:
                p.copy_(1.0 + 0.2 * noise)  # norm scales
            elif name.split(".")[-1] in ("bias",):
                p.copy_(0.1 * noise)
            else:  # embeddings, clip_mean, CFG null embedding
                p.copy_(0.5 * noise)


def round_to_fp16(model: torch.nn.Module) -> None:
    """Makes every weight exactly representable in fp16, so the fp16 variant holds the same values."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())


def build(cls, seed: int, perturb_seed: int, *args, **kwargs):
    """Builds a model after torch.manual_seed(seed) (as diffusers' tests do), then randomises constants."""
    torch.manual_seed(seed)
    model = cls(*args, **kwargs)
    randomize_constant_parameters(model, perturb_seed)
    return model.eval()


def text_encoder(seed=0, **cfg):
    return build(CLIPTextModelWithProjection, seed, 100 + seed, CLIPTextConfig(**cfg))


def vision_encoder(seed=0, **cfg):
    return build(CLIPVisionModelWithProjection, seed, 200 + seed, CLIPVisionConfig(**cfg))


def decoder_unet(channels, layers, cross_dim, head_dim, groups, sample_size, seed=0):
    k = len(channels)
    return build(
        UNet2DConditionModel,
        seed,
        300 + seed,
        sample_size=sample_size,
        in_channels=3,
        out_channels=6,
        down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * (k - 1),
        up_block_types=("SimpleCrossAttnUpBlock2D",) * (k - 1) + ("ResnetUpsampleBlock2D",),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=tuple(channels),
        layers_per_block=layers,
        cross_attention_dim=cross_dim,
        attention_head_dim=head_dim,
        resnet_time_scale_shift="scale_shift",
        class_embed_type="identity",
        norm_num_groups=groups,
    )


def super_res_unet(channels, layers, groups, sample_size, add_attention, seed):
    k = len(channels)
    kwargs = dict(
        sample_size=sample_size,
        layers_per_block=layers,
        down_block_types=("ResnetDownsampleBlock2D",) * k,
        up_block_types=("ResnetUpsampleBlock2D",) * k,
        block_out_channels=tuple(channels),
        in_channels=6,
        out_channels=3,
        norm_num_groups=groups,
    )
    if add_attention is not None:  # None: leave the constructor default (true), as diffusers' tiny test does
        kwargs["add_attention"] = add_attention
    return build(UNet2DModel, seed, 400 + seed, **kwargs)


def schedulers():
    """The three Karlo schedulers (spec §2.2)."""
    prior = UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000, clip_sample_range=5.0)
    decoder = UnCLIPScheduler(variance_type="learned_range", prediction_type="epsilon", num_train_timesteps=1000)
    super_res = UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="epsilon", num_train_timesteps=1000)
    return prior, decoder, super_res


# ------------------------------------------------------------------------------------------------
# Pipeline specs
# ------------------------------------------------------------------------------------------------


@dataclass
class PipelineSpec:
    """One saved diffusers directory: its components and how they are written."""

    name: str
    kind: str  # "text2img" or "variation"
    components: dict
    description: str
    text_proj_library: str = "unclip"
    fp16_variant: bool = False
    shard: dict = field(default_factory=dict)  # component -> max_shard_size


@dataclass
class RunSpec:
    """One recorded pipeline call (one fixture case)."""

    name: str
    pipeline: str
    description: str
    call: dict
    seed: int
    image_input: str | None = None  # variation: "tensor" or "pil"


def make_pipelines(small_vocab, small_merges, real_vocab, real_merges) -> list[PipelineSpec]:
    specs = []

    # 1. diffusers' own tiny test configuration (spec §15); every model seeded 0, super_res_last seeded 1.
    p, d, s = schedulers()
    specs.append(
        PipelineSpec(
            name="tiny_diffusers",
            kind="text2img",
            description="diffusers test-suite tiny configuration (spec §15): decoder 32x32, SR 64x64 with mid-block self-attention",
            components=dict(
                tokenizer=(small_vocab, small_merges),
                text_encoder=text_encoder(
                    bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=32, projection_dim=32,
                    intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=5, vocab_size=1000,
                ),
                prior=build(PriorTransformer, 0, 500, num_attention_heads=2, attention_head_dim=12, embedding_dim=32, num_layers=1),
                text_proj=build(UnCLIPTextProjModel, 0, 600, clip_embeddings_dim=32, time_embed_dim=128, cross_attention_dim=100),
                decoder=decoder_unet((32, 64), 1, 100, 4, 32, 32),
                super_res_first=super_res_unet((32, 64), 1, 32, 64, None, seed=0),
                super_res_last=super_res_unet((32, 64), 1, 32, 64, None, seed=1),
                prior_scheduler=p, decoder_scheduler=d, super_res_scheduler=s,
            ),
        )
    )

    # 2. Karlo's structure scaled down: 4 levels, 3 layers per block, channels in Karlo's 1:2:3:4 ratio.
    p, d, s = schedulers()
    specs.append(
        PipelineSpec(
            name="tiny_karlo_structure",
            kind="text2img",
            description=(
                "Karlo block structure scaled down: decoder 4 levels x 3 layers, channels (4,8,12,16), "
                "norm_num_groups 2, per-head dim 4, scale_shift, identity class embedding, 16x16; SR 4 levels "
                "x 3 layers, no attention, additive time, 64x64 (4x upsampling like Karlo)"
            ),
            components=dict(
                tokenizer=(small_vocab, small_merges),
                text_encoder=text_encoder(
                    bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=16, projection_dim=16,
                    intermediate_size=40, num_attention_heads=2, num_hidden_layers=2, vocab_size=1000, seed=2,
                ),
                prior=build(PriorTransformer, 2, 502, num_attention_heads=2, attention_head_dim=12, embedding_dim=16, num_layers=3),
                text_proj=build(UnCLIPTextProjModel, 2, 602, clip_embeddings_dim=16, time_embed_dim=16, cross_attention_dim=20),
                decoder=decoder_unet((4, 8, 12, 16), 3, 20, 4, 2, 16, seed=2),
                super_res_first=super_res_unet((4, 8, 12, 16), 3, 2, 64, False, seed=2),
                super_res_last=super_res_unet((4, 8, 12, 16), 3, 2, 64, False, seed=3),
                prior_scheduler=p, decoder_scheduler=d, super_res_scheduler=s,
            ),
            shard={"decoder": "200KB"},
        )
    )

    # 3. The real 49408-entry CLIP BPE vocabulary with an 8-wide text tower.
    p, d, s = schedulers()
    specs.append(
        PipelineSpec(
            name="tiny_real_vocab",
            kind="text2img",
            description="real CLIP BPE tokenizer (49408 tokens, pad '!'), text hidden size 8; small 2-level decoder and SR",
            components=dict(
                tokenizer=(real_vocab, real_merges),
                text_encoder=text_encoder(
                    bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=8, projection_dim=8,
                    intermediate_size=20, num_attention_heads=2, num_hidden_layers=2, vocab_size=49408, seed=4,
                ),
                prior=build(PriorTransformer, 4, 504, num_attention_heads=2, attention_head_dim=8, embedding_dim=8, num_layers=2),
                text_proj=build(UnCLIPTextProjModel, 4, 604, clip_embeddings_dim=8, time_embed_dim=32, cross_attention_dim=12),
                decoder=decoder_unet((8, 16), 2, 12, 8, 4, 16, seed=4),
                super_res_first=super_res_unet((8, 16), 1, 4, 32, False, seed=4),
                super_res_last=super_res_unet((8, 16), 1, 4, 32, False, seed=5),
                prior_scheduler=p, decoder_scheduler=d, super_res_scheduler=s,
            ),
            shard={"text_encoder": "1MB"},
        )
    )

    # 4. Image variations with the tiny CLIP vision tower of spec §15; weights fp16-representable.
    _, d, s = schedulers()
    spec = PipelineSpec(
        name="tiny_variation",
        kind="variation",
        description=(
            "UnCLIPImageVariationPipeline: spec §15 tiny CLIP text and vision towers (vision patch 1, 32x32), "
            "small 2-level decoder 16x16 and SR 32x32; all weights fp16-representable, saved also as fp16 variant"
        ),
        components=dict(
            tokenizer=(small_vocab, small_merges),
            text_encoder=text_encoder(
                bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=32, projection_dim=32,
                intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=5, vocab_size=1000, seed=6,
            ),
            image_encoder=vision_encoder(
                hidden_size=32, projection_dim=32, num_hidden_layers=5, num_attention_heads=4, image_size=32,
                intermediate_size=37, patch_size=1, seed=6,
            ),
            feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
            text_proj=build(UnCLIPTextProjModel, 6, 606, clip_embeddings_dim=32, time_embed_dim=32, cross_attention_dim=24),
            decoder=decoder_unet((8, 16), 1, 24, 8, 4, 16, seed=6),
            super_res_first=super_res_unet((8, 16), 1, 4, 32, False, seed=6),
            super_res_last=super_res_unet((8, 16), 1, 4, 32, False, seed=7),
            decoder_scheduler=d, super_res_scheduler=s,
        ),
        # The other spelling a loader must accept (what the deprecated pipeline's save_pretrained writes).
        text_proj_library="diffusers",
        fp16_variant=True,
    )
    for c in spec.components.values():
        if isinstance(c, torch.nn.Module):
            round_to_fp16(c)
    specs.append(spec)
    return specs


def make_runs() -> list[RunSpec]:
    frog = "a high-resolution photograph of a big red frog on a green leaf."
    steps = lambda p, d, s: dict(prior_num_inference_steps=p, decoder_num_inference_steps=d, super_res_num_inference_steps=s)
    return [
        RunSpec(
            "tiny_diffusers", "tiny_diffusers", "diffusers' tiny test run: 'horse', 2/2/2 steps, guidance 4/8",
            dict(prompt=["horse"], num_images_per_prompt=1, prior_guidance_scale=4.0, decoder_guidance_scale=8.0, **steps(2, 2, 2)),
            seed=0,
        ),
        RunSpec(
            "tiny_karlo_structure", "tiny_karlo_structure",
            "Karlo structure; prior 25 steps (Karlo's schedule), decoder 7 (832.5 and 166.5 round half-even), SR 3 (499.5)",
            dict(prompt=[frog], num_images_per_prompt=1, prior_guidance_scale=4.0, decoder_guidance_scale=8.0, **steps(25, 7, 3)),
            seed=2,
        ),
        RunSpec(
            "tiny_real_vocab", "tiny_real_vocab",
            "two prompts through the real CLIP BPE, 2 images per prompt (B = 4), 3/3/2 steps, guidance 4/8",
            dict(prompt=["A  Photo of a CAT!", frog], num_images_per_prompt=2, prior_guidance_scale=4.0,
                 decoder_guidance_scale=8.0, **steps(3, 3, 2)),
            seed=3,
        ),
        RunSpec(
            "tiny_real_vocab_nocfg", "tiny_real_vocab",
            "classifier-free guidance off (both scales 1.0): no unconditional branch, no null image embedding",
            dict(prompt=["horse"], num_images_per_prompt=1, prior_guidance_scale=1.0, decoder_guidance_scale=1.0, **steps(3, 3, 2)),
            seed=4,
        ),
        RunSpec(
            "tiny_variation", "tiny_variation",
            "image variation from a preprocessed pixel_values tensor, 2 images, decoder 3 steps, SR 2, guidance 8",
            dict(num_images_per_prompt=2, decoder_guidance_scale=8.0, decoder_num_inference_steps=3, super_res_num_inference_steps=2),
            seed=5, image_input="tensor",
        ),
        RunSpec(
            "tiny_variation_pil", "tiny_variation",
            "image variation from a PIL image (input.png, 48x40) through CLIPImageProcessor (PIL backend)",
            dict(num_images_per_prompt=1, decoder_guidance_scale=8.0, decoder_num_inference_steps=3, super_res_num_inference_steps=2),
            seed=6, image_input="pil",
        ),
    ]


TOKENIZER_EXAMPLES = [
    "horse",
    "",
    "A  Photo of a CAT!",
    "a high-resolution photograph of a big red frog on a green leaf.",
    "horse " * 100,
    "It's 2024: we'll see 3.14 cats don't   they?",
    "Crème brûlée, naïve café – “quoted” 日本語 🐸",
    "hello world\n\tnew line",
]

# ------------------------------------------------------------------------------------------------
# Saving a pipeline directory
# ------------------------------------------------------------------------------------------------


def save_pipeline(spec: PipelineSpec, folder: Path) -> None:
    """Writes the diffusers layout: model_index.json plus one sub-folder per component."""
    folder.mkdir(parents=True, exist_ok=True)
    c = spec.components
    index = {
        "_class_name": "UnCLIPPipeline" if spec.kind == "text2img" else "UnCLIPImageVariationPipeline",
        "_diffusers_version": diffusers.__version__,
    }
    for name in sorted(c):
        comp = c[name]
        sub = folder / name
        if name == "tokenizer":
            write_tokenizer(sub, *comp)
            index[name] = ["transformers", "CLIPTokenizer"]
        elif isinstance(comp, UnCLIPScheduler):
            comp.save_pretrained(sub)
            index[name] = ["diffusers", "UnCLIPScheduler"]
        elif isinstance(comp, (CLIPTextModelWithProjection, CLIPVisionModelWithProjection)):
            # fp16 variant first: the fp32 save afterwards leaves config.json saying "dtype": "float32".
            if spec.fp16_variant:
                copy.deepcopy(comp).half().save_pretrained(sub, variant="fp16")
            shard = spec.shard.get(name)
            comp.save_pretrained(sub, **({"max_shard_size": shard} if shard else {}))
            index[name] = ["transformers", type(comp).__name__]
        elif isinstance(comp, torch.nn.Module):  # diffusers ModelMixin
            if spec.fp16_variant:
                copy.deepcopy(comp).half().save_pretrained(sub, variant="fp16")
            shard = spec.shard.get(name)
            comp.save_pretrained(sub, **({"max_shard_size": shard} if shard else {}))
            lib = spec.text_proj_library if name == "text_proj" else "diffusers"
            index[name] = [lib, type(comp).__name__]
        else:  # image processor
            comp.save_pretrained(sub)
            index[name] = ["transformers", "CLIPImageProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    # transformers may add files nobody asked for (generation config etc.); keep the layout minimal.
    for extra in folder.rglob("generation_config.json"):
        extra.unlink()


def load_pipeline(spec: PipelineSpec, folder: Path, variant: str | None = None):
    """Rebuilds the pipeline from the saved directory, component by component (diffusers refuses the
    `unclip` library name in model_index.json, spec §2.1), as fp32 modules."""
    f32 = torch.float32
    kw = {"variant": variant} if variant else {}
    comps = {}
    for name in spec.components:
        sub = str(folder / name)
        if name == "tokenizer":
            comps[name] = CLIPTokenizer.from_pretrained(sub)
        elif name.endswith("scheduler"):
            comps[name] = UnCLIPScheduler.from_pretrained(sub)
        elif name == "text_encoder":
            comps[name] = CLIPTextModelWithProjection.from_pretrained(sub, dtype=f32, **kw).eval()
        elif name == "image_encoder":
            comps[name] = CLIPVisionModelWithProjection.from_pretrained(sub, dtype=f32, **kw).eval()
        elif name == "feature_extractor":
            comps[name] = CLIPImageProcessor.from_pretrained(sub)
        elif name == "prior":
            comps[name] = PriorTransformer.from_pretrained(sub, torch_dtype=f32, **kw).eval()
        elif name == "text_proj":
            comps[name] = UnCLIPTextProjModel.from_pretrained(sub, torch_dtype=f32, **kw).eval()
        elif name == "decoder":
            comps[name] = UNet2DConditionModel.from_pretrained(sub, torch_dtype=f32, **kw).eval()
        else:
            comps[name] = UNet2DModel.from_pretrained(sub, torch_dtype=f32, **kw).eval()
        if isinstance(comps[name], torch.nn.Module):
            assert all(p.dtype == f32 for p in comps[name].parameters()), name
            # transformers 5 leaves weights as views into the mmap'ed safetensors file at 4-byte-aligned
            # offsets; CPU GEMM takes another path for unaligned data and rounds differently (1 ulp).
            # Fresh copies make the rebuilt pipeline compute exactly like the original.
            with torch.no_grad():
                for p in comps[name].parameters():
                    p.data = p.data.clone()
    return make_pipeline(spec.kind, comps)


def make_pipeline(kind: str, comps: dict):
    if kind == "text2img":
        pipe = pipeline_unclip.UnCLIPPipeline(**comps)
    else:
        pipe = pipeline_unclip_image_variation.UnCLIPImageVariationPipeline(**comps)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ------------------------------------------------------------------------------------------------
# Recording
# ------------------------------------------------------------------------------------------------


class Recorder:
    """Wraps randn_tensor, the schedulers, the model forwards and F.interpolate of one pipeline call.

    mode "record" lets randn_tensor draw and keeps each draw; mode "replay" hands back recorded draws."""

    def __init__(self, pipe, kind: str, replay_noise: dict | None = None):
        self.pipe = pipe
        self.kind = kind
        self.replay_noise = replay_noise
        self.stage: str | None = None
        self.noise: dict[str, list[torch.Tensor]] = {s: [] for s in STAGES}
        self.tensors: dict[str, torch.Tensor] = {}
        self.counts = defaultdict(int)
        self.timesteps: dict[str, list[int]] = {s: [] for s in STAGES}
        self.sr_unets: list[str] = []
        self.text_encoder_ids: list[list[list[int]]] = []
        self._undo = []

    # -- helpers --
    def put(self, name: str, t: torch.Tensor) -> None:
        assert name not in self.tensors, name
        self.tensors[name] = t.detach().to(torch.float32).clone().contiguous()

    def _patch(self, obj, attr, value):
        """Replaces obj.attr; for an instance the override is an instance attribute, removed on exit."""
        is_module = isinstance(obj, type(sys))
        self._undo.append((obj, attr, getattr(obj, attr), is_module))
        setattr(obj, attr, value)

    def __enter__(self):
        pipe = self.pipe
        orig_randn = scheduling_unclip.randn_tensor

        def randn(shape, *args, **kwargs):
            if self.stage is None:
                raise RuntimeError("randn_tensor called outside a known stage")
            if self.replay_noise is None:
                t = orig_randn(shape, *args, **kwargs)
            else:
                k = len(self.noise[self.stage])
                t = self.replay_noise[self.stage][k]
                dtype = kwargs.get("dtype")
                assert tuple(t.shape) == tuple(shape) and (dtype is None or t.dtype == dtype), (self.stage, k, shape)
                t = t.clone()
            self.noise[self.stage].append(t.clone())
            return t

        self._patch(scheduling_unclip, "randn_tensor", randn)
        self._patch(pipeline_unclip, "randn_tensor", randn)
        self._patch(pipeline_unclip_image_variation, "randn_tensor", randn)

        # Record image_small and image_upscaled where the pipeline resizes.
        module = pipeline_unclip if self.kind == "text2img" else pipeline_unclip_image_variation
        real_F = module.F
        rec = self

        class FProxy:
            def __getattr__(self, name):
                return getattr(real_F, name)

            # functools.wraps keeps F.interpolate's signature visible: the pipeline inspects it for
            # `antialias` and would silently drop antialiasing otherwise.
            @staticmethod
            @functools.wraps(real_F.interpolate)
            def interpolate(x, *a, **kw):
                assert kw.get("mode") == "bicubic" and kw.get("antialias") is True and kw.get("align_corners") is False, kw
                out = real_F.interpolate(x, *a, **kw)
                rec.put("image_small", x)
                rec.put("image_upscaled", out)
                return out

        self._patch(module, "F", FProxy())

        stage_of = {}
        for stage in STAGES:
            sched = getattr(pipe, f"{stage}_scheduler", None)
            if sched is None:
                continue
            stage_of[id(sched)] = stage
            self._wrap_step(stage, sched)

        orig_prepare = pipe.prepare_latents

        def prepare_latents(shape, dtype, device, generator, latents, scheduler):
            self.stage = stage_of[id(scheduler)]
            out = orig_prepare(shape, dtype, device, generator, latents, scheduler)
            # The initial latent is the stage's first draw times init_noise_sigma (1.0), so it is not stored
            # again: <stage>.latents.0 is noise <stage>.0.
            assert len(self.noise[self.stage]) == 1 and torch.equal(out, self.noise[self.stage][0])
            self.stage = None
            return out

        self._patch(pipe, "prepare_latents", prepare_latents)

        hooks = []
        hooks.append(pipe.text_encoder.register_forward_hook(self._text_encoder_hook, with_kwargs=True))
        if self.kind == "text2img":
            hooks.append(pipe.prior.register_forward_hook(self._prior_hook, with_kwargs=True))
        else:
            hooks.append(pipe.image_encoder.register_forward_hook(self._image_encoder_hook, with_kwargs=True))
        hooks.append(pipe.text_proj.register_forward_hook(self._text_proj_hook, with_kwargs=True))
        hooks.append(pipe.decoder.register_forward_hook(self._decoder_hook, with_kwargs=True))
        hooks.append(pipe.super_res_first.register_forward_hook(self._sr_hook("super_res_first"), with_kwargs=True))
        hooks.append(pipe.super_res_last.register_forward_hook(self._sr_hook("super_res_last"), with_kwargs=True))
        self._hooks = hooks
        return self

    def __exit__(self, *exc):
        for h in self._hooks:
            h.remove()
        for obj, attr, old, is_module in reversed(self._undo):
            if is_module:
                setattr(obj, attr, old)
            else:
                delattr(obj, attr)  # back to the class's method
        return False

    def _wrap_step(self, stage, sched):
        orig = sched.step
        sig = inspect.signature(orig)

        def step(*args, **kwargs):
            b = sig.bind(*args, **kwargs)
            k = self.counts[stage + ".step"]
            self.counts[stage + ".step"] += 1
            self.timesteps[stage].append(int(b.arguments["timestep"]))
            if stage != "super_res":  # the SR scheduler input is the UNet output, stored by the hook
                self.put(f"{stage}.step.{k}.model_output", b.arguments["model_output"])
            self.stage = stage
            out = orig(*args, **kwargs)
            self.stage = None
            self.put(f"{stage}.latents.{k + 1}", out.prev_sample)
            return out

        self._patch(sched, "step", step)

    # -- hooks --
    def _text_encoder_hook(self, module, args, kwargs, output):
        ids = args[0] if args else kwargs["input_ids"]
        k = self.counts["text_encoder"]
        self.counts["text_encoder"] += 1
        label = ["cond", "uncond"][k]
        self.text_encoder_ids.append(ids.tolist())
        self.put(f"text_encoder.{label}.text_embeds", output.text_embeds)
        self.put(f"text_encoder.{label}.last_hidden_state", output.last_hidden_state)

    def _image_encoder_hook(self, module, args, kwargs, output):
        pixel_values = args[0] if args else kwargs["pixel_values"]
        self.put("image_encoder.pixel_values", pixel_values)
        self.put("image_encoder.image_embeds", output.image_embeds)

    def _prior_hook(self, module, args, kwargs, output):
        k = self.counts["prior"]
        self.counts["prior"] += 1
        x = args[0] if args else kwargs["hidden_states"]
        self.put(f"prior.step.{k}.input", x)
        self.put(f"prior.step.{k}.output", output.predicted_image_embedding)

    def _text_proj_hook(self, module, args, kwargs, output):
        # The prior's post-processed latents (text→image) or the repeated image_embeds (variations).
        self.put("image_embeddings", kwargs["image_embeddings"])
        self.put("prompt_embeds", kwargs["prompt_embeds"])
        self.put("text_encoder_hidden_states", kwargs["text_encoder_hidden_states"])
        self.put("text_proj.encoder_hidden_states", output[0])
        self.put("text_proj.additive_time", output[1])

    def _decoder_hook(self, module, args, kwargs, output):
        k = self.counts["decoder"]
        self.counts["decoder"] += 1
        if k == 0:
            mask = kwargs["attention_mask"]
            self.put("decoder.attention_mask", mask)
            self.put("text_mask", mask[:, self.pipe.text_proj.clip_extra_context_tokens :])
        self.put(f"decoder.step.{k}.output", output.sample)

    def _sr_hook(self, which):
        def hook(module, args, kwargs, output):
            k = self.counts["super_res"]
            self.counts["super_res"] += 1
            self.sr_unets.append(which)
            self.put(f"super_res.step.{k}.output", output.sample)

        return hook


def run_once(pipe, kind: str, run: RunSpec, image_input, replay_noise=None):
    """Calls the pipeline under a Recorder; returns (recorder, image as float32 NHWC numpy)."""
    generator = torch.Generator().manual_seed(run.seed)
    with Recorder(pipe, kind, replay_noise) as rec, torch.no_grad():
        if kind == "text2img":
            out = pipe(generator=generator, output_type="np", **run.call)
        else:
            out = pipe(image=image_input, generator=generator, output_type="np", **run.call)
    image = out.images
    assert image.dtype == np.float32
    for stage in STAGES:
        if replay_noise is not None:
            assert len(rec.noise[stage]) == len(replay_noise[stage]), f"{stage}: not every recorded draw was used"
    return rec, image


def uint8_image(image: np.ndarray) -> np.ndarray:
    """Matches diffusers numpy_to_pil: (image * 255).round() (NumPy round half to even), as uint8."""
    return (image * 255).round().astype("uint8")


# ------------------------------------------------------------------------------------------------
# Inputs for the image-variation runs
# ------------------------------------------------------------------------------------------------


def variation_input(run: RunSpec, case_dir: Path):
    if run.image_input == "tensor":
        g = torch.Generator().manual_seed(1234)
        # Already-preprocessed pixel_values (the pipeline skips the processor for tensors), roughly in the
        # normalised range a real image would give.
        return torch.rand((1, 3, 32, 32), generator=g) * 4.0 - 2.0, {"image": "pixel_values", "pixel_values_shape": [1, 3, 32, 32]}
    rng = np.random.default_rng(42)
    h, w = 40, 48  # non-square: exercises shortest-edge resize and centre crop
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / (w - 1), yy * 255 / (h - 1), (xx + yy) * 255 / (w + h - 2)], axis=-1)
    arr = np.clip(base + rng.normal(0, 25, size=base.shape), 0, 255).astype(np.uint8)
    path = case_dir / "input.png"
    PIL.Image.fromarray(arr, "RGB").save(path)
    image = PIL.Image.open(path).convert("RGB")
    return image, {"image": "input.png", "image_size": [w, h]}


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


def tokenize(tokenizer, prompts):
    enc = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def check_real_tokenizer(tokenizer) -> None:
    """Spec §4.2 verified examples."""
    expect = {
        "horse": [49406, 4558, 49407],
        "": [49406, 49407],
        "A  Photo of a CAT!": [49406, 320, 1125, 539, 320, 2368, 0, 49407],
        "a high-resolution photograph of a big red frog on a green leaf.": [
            49406, 320, 1400, 268, 9977, 8853, 539, 320, 1205, 736, 11438, 525, 320, 1901, 7232, 269, 49407],
    }
    for text, ids in expect.items():
        got = tokenize(tokenizer, [text])
        assert got["input_ids"][0] == ids + [0] * (77 - len(ids)), (text, got["input_ids"][0][:20])
        assert sum(got["attention_mask"][0]) == len(ids)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: %(default)s)")
    ap.add_argument("--bpe", default=None, help="open_clip's bpe_simple_vocab_16e6.txt.gz, or an open_clip_torch wheel holding it")
    ap.add_argument("--cases", nargs="*", default=None, help="only these run names (their pipelines are rebuilt too)")
    args = ap.parse_args()

    torch.set_num_threads(1)  # one summation order, independent of the machine's core count
    torch.use_deterministic_algorithms(True)
    out_root = Path(args.out)

    with tempfile.TemporaryDirectory() as tmp:
        bpe = fetch_bpe(args.bpe, Path(tmp))
        bpe_sha = hashlib.sha256(Path(bpe).read_bytes()).hexdigest()
        merges = load_bpe_merges(Path(bpe))
    small_vocab, small_merges = clip_vocab(merges, 1000)
    real_vocab, real_merges = clip_vocab(merges, 49408)

    pipelines = {p.name: p for p in make_pipelines(small_vocab, small_merges, real_vocab, real_merges)}
    runs = make_runs()
    if args.cases:
        runs = [r for r in runs if r.name in args.cases]
        assert runs, "no such case"
    needed = {r.pipeline for r in runs}

    versions = {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "python": sys.version.split()[0],
    }

    # Save every needed pipeline directory, fresh.
    for name in sorted(needed):
        folder = out_root / name
        if folder.exists():
            shutil.rmtree(folder)
        save_pipeline(pipelines[name], folder)

    summary = []
    for run in runs:
        spec = pipelines[run.pipeline]
        case_dir = out_root / run.name
        if run.name != run.pipeline:
            if case_dir.exists():
                shutil.rmtree(case_dir)
        case_dir.mkdir(parents=True, exist_ok=True)

        comps = {k: v for k, v in spec.components.items() if k != "tokenizer"}
        comps["tokenizer"] = CLIPTokenizer.from_pretrained(str(out_root / run.pipeline / "tokenizer"))
        if spec.name == "tiny_real_vocab":
            check_real_tokenizer(comps["tokenizer"])
        pipe = make_pipeline(spec.kind, comps)
        image_input, input_desc = (None, {})
        if spec.kind == "variation":
            image_input, input_desc = variation_input(run, case_dir)

        rec, image = run_once(pipe, spec.kind, run, image_input)
        image_u8 = uint8_image(image)

        # --- self-check 1: rebuild from the saved files, replay the noise, everything bit-identical ---
        def replay(variant=None):
            pipe2 = load_pipeline(spec, out_root / run.pipeline, variant)
            rec2, image2 = run_once(pipe2, spec.kind, run, image_input, replay_noise=rec.noise)
            assert rec2.tensors.keys() == rec.tensors.keys()
            for k in rec.tensors:  # in recording order, so the first failure names the first stage that differs
                a, b = rec.tensors[k], rec2.tensors[k]
                assert torch.equal(a, b), f"{run.name}: {k} differs on replay ({variant}): max {float((a - b).abs().max())}"
            assert np.array_equal(image, image2), f"{run.name}: replayed image differs (variant {variant})"

        replay()
        checks = ["replay from saved fp32 files: bit-exact"]
        if spec.fp16_variant:
            replay("fp16")
            checks.append("replay from fp16-variant files upcast to fp32: bit-exact")

        # --- write the records ---
        tensors = dict(rec.tensors)
        tensors["image"] = torch.from_numpy(np.ascontiguousarray(image))
        tensors["image_uint8"] = torch.from_numpy(np.ascontiguousarray(image_u8, dtype=np.float32))
        for k in tensors:
            assert tensors[k].dtype == torch.float32
        save_file(dict(sorted(tensors.items())), str(case_dir / "intermediates.safetensors"))
        noise = {f"{s}.{i}": t.contiguous() for s in STAGES for i, t in enumerate(rec.noise[s])}
        save_file(noise, str(case_dir / "noise.safetensors"))
        PIL.Image.fromarray(image_u8[0]).save(case_dir / "image.png")
        for f in case_dir.rglob("*"):
            if f.is_file():
                f.chmod(0o644)  # safetensors writes 0600

        tok = comps["tokenizer"]
        prompts = run.call.get("prompt") or [""] * (1 if spec.kind == "variation" else 0)
        n_prompts = len(prompts)
        cfg = (run.call.get("prior_guidance_scale", 0) > 1.0) or (run.call.get("decoder_guidance_scale", 8.0) > 1.0)
        cond = tokenize(tok, prompts)
        uncond = tokenize(tok, [""] * n_prompts)
        assert rec.text_encoder_ids[0] == cond["input_ids"], "tokenizer ids differ from what the text encoder got"
        if cfg:
            assert rec.text_encoder_ids[1] == uncond["input_ids"]
        batch = n_prompts * run.call["num_images_per_prompt"]

        case = {
            "case": run.name,
            "description": run.description,
            "pipeline": "UnCLIPPipeline" if spec.kind == "text2img" else "UnCLIPImageVariationPipeline",
            "pipeline_dir": "." if run.name == run.pipeline else f"../{run.pipeline}",
            "pipeline_description": spec.description,
            "inputs": dict(
                {k: v for k, v in run.call.items()},
                seed=run.seed,
                output_type="np",
                **input_desc,
            ),
            "prompts_encoded": prompts,
            "batch_size": batch,
            "do_classifier_free_guidance": cfg,
            "tokenizer": {"cond": cond, "uncond": uncond if cfg else None},
            "timesteps": rec.timesteps,
            "super_res_unet_per_step": rec.sr_unets,
            "noise": {s: [list(t.shape) for t in rec.noise[s]] for s in STAGES},
            "intermediates": {k: list(v.shape) for k, v in sorted(tensors.items())},
            "weights": {
                "dtype": "float32",
                "fp16_variant": spec.fp16_variant,
                "fp16_representable": spec.fp16_variant,
                "sharded": sorted(spec.shard),
                "text_proj_library_in_model_index": spec.text_proj_library,
            },
            "self_checks": checks,
            "generated_by": {"script": "Scripts/make_parity_fixtures.py", "versions": versions, "bpe_sha256": bpe_sha},
        }
        if spec.name == "tiny_real_vocab" and run.name == "tiny_real_vocab":
            case["tokenizer_examples"] = [dict(text=t, **{k: v[0] for k, v in tokenize(tok, [t]).items()}) for t in TOKENIZER_EXAMPLES]
        (case_dir / "case.json").write_text(json.dumps(case, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        summary.append((run.name, folder_size(case_dir)))
        print(f"{run.name}: ok ({'; '.join(checks)}), {folder_size(case_dir) / 1e6:.2f} MB", flush=True)

    total = folder_size(out_root)
    print(f"total under {out_root}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
