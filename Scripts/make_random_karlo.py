#!/usr/bin/env python3
"""Writes a Karlo text-to-image directory with random weights at the real configs, in diffusers' own layout.

  make_random_karlo.py DIR [--seed 0]

Every component is built by diffusers' / transformers' own class at Karlo's configuration
(/work/shared/spec/unclip-architecture.md §2.2; the same values as peer_torch.py's `karlo_configs`), randomly
initialised by those classes, and saved by diffusers' deprecated `UnCLIPPipeline.save_pretrained`, so the layout,
the model_index.json and the safetensors files are diffusers' by construction. About 3.4 B parameters, 13.7 GB of
fp32 safetensors. Karlo's CLIP vocabulary cannot be had here, so the tokenizer is the embedded ShapesWorld model's
BPE (ids < 600, all inside the text encoder's 49 408) with Karlo's 77-token context; random weights make the picture
meaningless, not the comparison of two implementations on it (Scripts/karlo_end_to_end.sh).
"""
import argparse, os, sys, time

import torch
from diffusers import PriorTransformer, UNet2DConditionModel, UNet2DModel, UnCLIPScheduler
from diffusers.pipelines.deprecated.unclip import pipeline_unclip
from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
if os.path.exists(os.path.join(a.dir, "model_index.json")):
    sys.exit(f"{a.dir} already holds a pipeline (model_index.json); remove it or pick another directory")
torch.manual_seed(a.seed)
here = os.path.dirname(os.path.abspath(__file__))
tokenizer_files = os.path.join(here, "..", "Sources", "UnCLIPShapesModel", "shapes-unclip", "tokenizer")
started = time.time()

tokenizer = CLIPTokenizer(os.path.join(tokenizer_files, "vocab.json"), os.path.join(tokenizer_files, "merges.txt"),
                          model_max_length=77)
# The text encoder's special ids are the tokenizer's (Karlo's are CLIP's 49406 / 49407): transformers pools the hidden
# state at the first eos_token_id, and at position 0 when the ids hold none.
text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu",
    bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
prior = PriorTransformer()  # Karlo's conversion script passes no arguments: every default (spec §2.2)
# The prior un-normalises its output by clip_std and clip_mean, which a checkpoint supplies and the constructor sets
# to zero: with zeros every image embedding would be 0 and the prior would not reach the decoder.
with torch.no_grad():
    prior.clip_std.fill_(1.0)
text_proj = UnCLIPTextProjModel(clip_extra_context_tokens=4, clip_embeddings_dim=768, time_embed_dim=1280,
                                cross_attention_dim=1536)
decoder = UNet2DConditionModel(
    sample_size=64, in_channels=3, out_channels=6, layers_per_block=3, block_out_channels=(320, 640, 960, 1280),
    down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
    mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
    cross_attention_dim=1536, attention_head_dim=64, resnet_time_scale_shift="scale_shift", class_embed_type="identity")
super_res = dict(sample_size=256, in_channels=6, out_channels=3, layers_per_block=3, block_out_channels=(320, 640, 960, 1280),
                 down_block_types=("ResnetDownsampleBlock2D",) * 4, up_block_types=("ResnetUpsampleBlock2D",) * 4,
                 add_attention=False)
pipe = pipeline_unclip.UnCLIPPipeline(
    prior=prior, decoder=decoder, text_encoder=text_encoder, tokenizer=tokenizer, text_proj=text_proj,
    super_res_first=UNet2DModel(**super_res), super_res_last=UNet2DModel(**super_res),
    prior_scheduler=UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample", clip_sample_range=5.0),
    decoder_scheduler=UnCLIPScheduler(variance_type="learned_range", prediction_type="epsilon"),
    super_res_scheduler=UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="epsilon"))
params = sum(sum(p.numel() for p in m.parameters()) for m in
             [text_encoder, prior, text_proj, decoder, pipe.super_res_first, pipe.super_res_last])
pipe.save_pretrained(a.dir, safe_serialization=True)
print(f"wrote {a.dir}: {params:,} parameters in {time.time() - started:.0f} s")
