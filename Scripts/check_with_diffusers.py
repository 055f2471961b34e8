#!/usr/bin/env python3
"""Loads a pipeline directory made by `unclip train` with diffusers' and transformers' own classes, draws an
image with diffusers' UnCLIPPipeline while recording every noise draw, and saves the draws and the image, so that

    unclip generate --model DIR "PROMPT" --noise OUT/noise.safetensors -o swift.png

can be compared with OUT/diffusers.png (developer tool; needs torch, diffusers, transformers).

  check_with_diffusers.py DIR "a red circle above a blue square" --out OUT [--steps 25 25 7] [--timings]

--timings adds OUT/diffusers-timings.json: seconds loading each component, seconds in each component's forward
passes, the whole call, and the peak RSS (VmHWM) of the process (Scripts/karlo_end_to_end.sh reads it).

As the spec notes (§2.1), `UnCLIPPipeline.from_pretrained` refuses every unCLIP directory in current diffusers
(the text_proj class cannot be resolved), so each component is loaded with its own class's `from_pretrained`.
"""
import argparse, json, os, time
import numpy as np, PIL.Image, torch
from diffusers import PriorTransformer, UNet2DConditionModel, UNet2DModel, UnCLIPScheduler
from diffusers.pipelines.deprecated.unclip import pipeline_unclip
from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel
from diffusers.schedulers import scheduling_unclip
from safetensors.torch import save_file
from transformers import CLIPTextModelWithProjection, CLIPTokenizer

p = argparse.ArgumentParser()
p.add_argument("dir"); p.add_argument("prompt"); p.add_argument("--out", required=True)
p.add_argument("--steps", type=int, nargs=3, default=[25, 25, 7]); p.add_argument("--seed", type=int, default=0)
p.add_argument("--timings", action="store_true")
a = p.parse_args()
os.makedirs(a.out, exist_ok=True)
d = a.dir
load_s, stage_s = {}, {}

def load(name, make):
    t = time.perf_counter(); m = make(); load_s[name] = time.perf_counter() - t
    return m

components = dict(
    tokenizer=load("tokenizer", lambda: CLIPTokenizer.from_pretrained(f"{d}/tokenizer")),
    text_encoder=load("text_encoder", lambda: CLIPTextModelWithProjection.from_pretrained(f"{d}/text_encoder", torch_dtype=torch.float32)),
    prior=load("prior", lambda: PriorTransformer.from_pretrained(f"{d}/prior", torch_dtype=torch.float32)),
    text_proj=load("text_proj", lambda: UnCLIPTextProjModel.from_pretrained(f"{d}/text_proj", torch_dtype=torch.float32)),
    decoder=load("decoder", lambda: UNet2DConditionModel.from_pretrained(f"{d}/decoder", torch_dtype=torch.float32)),
    super_res_first=load("super_res_first", lambda: UNet2DModel.from_pretrained(f"{d}/super_res_first", torch_dtype=torch.float32)),
    super_res_last=load("super_res_last", lambda: UNet2DModel.from_pretrained(f"{d}/super_res_last", torch_dtype=torch.float32)),
    prior_scheduler=UnCLIPScheduler.from_pretrained(f"{d}/prior_scheduler"),
    decoder_scheduler=UnCLIPScheduler.from_pretrained(f"{d}/decoder_scheduler"),
    super_res_scheduler=UnCLIPScheduler.from_pretrained(f"{d}/super_res_scheduler"),
)
pipe = pipeline_unclip.UnCLIPPipeline(**components)
for name in ["text_encoder", "prior", "text_proj", "decoder", "super_res_first", "super_res_last"]:
    def before(module, args, kwargs, name=name): module._started = time.perf_counter()
    def after(module, args, kwargs, out, name=name): stage_s[name] = stage_s.get(name, 0) + time.perf_counter() - module._started
    components[name].register_forward_pre_hook(before, with_kwargs=True)
    components[name].register_forward_hook(after, with_kwargs=True)

draws = {"prior": [], "decoder": [], "super_res": []}
stage = {"name": "prior"}
original = pipeline_unclip.randn_tensor

def recording(shape, *args, **kwargs):
    t = original(shape, *args, **kwargs)
    # The pipeline draws the initial latents itself; the scheduler draws the step noise. The stage follows the
    # latent shapes: [B, E] prior, [B, 3, h, w] decoder, then the larger super-resolution latents.
    if len(t.shape) == 2: name = "prior"
    elif not draws["super_res"] and (not draws["decoder"] or t.shape == draws["decoder"][0].shape): name = "decoder"
    else: name = "super_res"
    draws[name].append(t.clone())
    return t

pipeline_unclip.randn_tensor = recording
scheduling_unclip.randn_tensor = recording
g = torch.Generator().manual_seed(a.seed)
call_started = time.perf_counter()
with torch.no_grad():
    image = pipe(a.prompt, prior_num_inference_steps=a.steps[0], decoder_num_inference_steps=a.steps[1],
                 super_res_num_inference_steps=a.steps[2], generator=g, output_type="np").images
call_s = time.perf_counter() - call_started
if a.timings:
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) * 1024 / 2**30
    json.dump(dict(load_s=load_s, stage_s=stage_s, call_s=call_s, peak_rss_gb=hwm, threads=torch.get_num_threads()),
              open(f"{a.out}/diffusers-timings.json", "w"), indent=1)
save_file({f"{k}.{i}": t.contiguous() for k, ts in draws.items() for i, t in enumerate(ts)}, f"{a.out}/noise.safetensors")
PIL.Image.fromarray((image[0] * 255).round().astype(np.uint8)).save(f"{a.out}/diffusers.png")
print(json.dumps({k: len(v) for k, v in draws.items()}), "draws; image", image.shape, "→", f"{a.out}/diffusers.png")
