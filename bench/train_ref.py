#!/usr/bin/env python3
# PyTorch eager reference for `tinyllava bench train`: one TinyLLaVA training step (forward with the causal-LM loss,
# backward, gradient clipping to 1.0, AdamW) at a given shape with random weights and random data, in plain torch,
# the model code of generate_ref.py (transformers' eager maths). Vision tower and connector run as Factory's recipe
# says: `finetune` trains the LLM and the connector (the tower frozen, under no_grad); `all` trains everything (the
# demo's recipe: its tower is trained from scratch too).
# Prints one JSON line: step ms (best and median of the timed steps after warm-up), samples/s, peak RSS.
#   /usr/bin/python3 bench/train_ref.py --preset demo --batch 16 --text-tokens 76 --steps 20 --threads 2
import argparse
import json
import math
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate_ref as G  # noqa: E402  (installs python3-torch when missing)

torch, F = G.torch, G.F

# the demo's tiny model (src/training/demo/model.ts DEMO_MODEL_SIZES; vocabulary as the demo's tokenizer learns it)
DEMO = dict(
    vision=dict(hidden=96, inter=384, layers=1, heads=4, image=48, patch=16, eps=1e-6),
    llm=dict(family="qwen2", vocab=456, hidden=128, inter=512, layers=4, heads=8, kv_heads=4, theta=1e4, eps=1e-6,
             partial_rotary=1.0, tied=True),
)
PRESETS = dict(G.PRESETS, demo=DEMO)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    ap.add_argument("--train", choices=["finetune", "all"], default=None,
                    help="finetune: LLM + connector (tower frozen); all: every part (default: all for demo)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--text-tokens", type=int, default=76, help="text tokens per sample beside the image's")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train = a.train or ("all" if a.preset == "demo" else "finetune")
    p = PRESETS[a.preset]
    vc, lc = p["vision"], p["llm"]
    dtype = torch.float32
    vision = G.SiglipVision(vc, dtype, False)
    connector = G.Connector(vc["hidden"], lc["hidden"], dtype)
    llm = G.Decoder(lc, dtype)
    tuned = connector.tensors() + llm.tensors() + (vision.tensors() if train == "all" else [])
    for t in tuned:
        t.requires_grad_(True)
    # Factory's parameter groups: no weight decay on biases and norms (1-D tensors)
    decay = [t for t in tuned if t.dim() > 1]
    no_decay = [t for t in tuned if t.dim() <= 1]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=0.0), dict(params=no_decay, weight_decay=0.0)], lr=2e-5)

    g = torch.Generator().manual_seed(a.seed + 1)
    B, T = a.batch, a.text_tokens
    pixels = torch.rand((B, 3, vc["image"], vc["image"]), generator=g) * 2 - 1
    text = torch.randint(0, lc["vocab"], (B, T), generator=g)
    labels = text.clone()
    labels[:, : T // 2] = -100  # the prompt half is masked, as the templates mask the user turns

    def step():
        if train == "all":
            feats = vision(pixels)[:, 1:]
        else:
            with torch.no_grad():
                feats = vision(pixels)[:, 1:]
        image = connector(feats)
        embeds = torch.cat((image, F.embedding(text, llm.embed)), dim=1)
        n_img = image.shape[1]
        logits = llm.forward(embeds, 0, llm.new_cache(), last_only=False)
        full_labels = torch.cat((torch.full((B, n_img), -100, dtype=torch.int64), labels), dim=1)
        # transformers' ForCausalLMLoss: float32 logits, shifted, mean over supervised tokens
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), full_labels[:, 1:].reshape(-1),
                               ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tuned, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)

    times = []
    loss = math.nan
    for i in range(2 + a.steps):
        t0 = time.perf_counter()
        loss = step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps(dict(
        engine="pytorch-eager",
        torch=torch.__version__,
        preset=a.preset,
        train=train,
        threads=torch.get_num_threads(),
        batch=B,
        image_tokens=int(vision.n_patches - 1),
        text_tokens=T,
        steps=a.steps,
        step_ms_best=round(times[0] * 1e3, 2),
        step_ms_median=round(med * 1e3, 2),
        samples_per_s=round(B / med, 3),
        last_loss=round(loss, 4),
        trainable_mb=round(G.mb(tuned), 1),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )))


if __name__ == "__main__":
    main()
