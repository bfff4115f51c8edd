#!/usr/bin/env python3
# PyTorch eager reference for `tinyllava bench generate`: a TinyLLaVA at real shapes with random weights, written in
# plain torch (no transformers) the way Hugging Face's eager code computes it, timed on the CPU:
#   SigLIP vision tower (SiglipVisionModel: patch conv + position embeddings, pre-norm encoder layers with
#   gelu-tanh MLPs, eager attention with a float32 softmax) → hidden_states[-2] → drop the first token (Factory's
#   "patch": 728 of 729) → mlp2x_gelu connector → the LLM: Qwen2 (RMSNorm in float32, GQA with RoPE θ=1e6 and q/k/v
#   biases, SiLU-gated MLP, tied lm_head) or Phi-2 (LayerNorm, parallel block, partial rotary 0.4, gelu_new, biases,
#   untied lm_head with bias), with a KV cache (torch.cat per step, as DynamicCache) and logits for the last position
#   only. Greedy decoding.
# Prints one JSON line: vision/connector ms for one 384×384 image, prefill ms (728 image + N text tokens), decode
# tokens/s over the new tokens, peak RSS, weights MB.
#   /usr/bin/python3 bench/generate_ref.py --preset qwen2-0.5b-siglip --dtype bfloat16 --threads 2 \
#       --prompt-text-tokens 40 --new-tokens 128
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # Debian's python3-torch (PyTorch 1.13, the same libtorch as the addon)
    if os.geteuid() == 0 and os.environ.get("TINYLLAVA_BENCH_NO_APT") != "1":
        print("generate_ref.py: installing python3-torch with apt-get …", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "python3-torch"], check=True, env=env)
        os.environ["TINYLLAVA_BENCH_NO_APT"] = "1"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    sys.exit("generate_ref.py: PyTorch is missing; install Debian's python3-torch (apt-get install python3-torch)")

# the shapes of src/models/presets.ts
SIGLIP_SO400M_384 = dict(hidden=1152, inter=4304, layers=27, heads=16, image=384, patch=14, eps=1e-6)
PRESETS = {
    "qwen2-0.5b-siglip": dict(
        vision=SIGLIP_SO400M_384,
        llm=dict(
            family="qwen2", vocab=151936, hidden=896, inter=4864, layers=24, heads=14, kv_heads=2, theta=1e6,
            eps=1e-6, partial_rotary=1.0, tied=True,
        ),
    ),
    "phi-2-siglip": dict(
        vision=SIGLIP_SO400M_384,
        llm=dict(
            family="phi", vocab=51200, hidden=2560, inter=10240, layers=32, heads=32, kv_heads=32, theta=1e4,
            eps=1e-5, partial_rotary=0.4, tied=False,
        ),
    ),
}


def param(shape, dtype, std=0.02):
    # drawn in place in the target dtype: no float32 copy of a bf16 model
    return torch.empty(shape, dtype=dtype).normal_(0.0, std)


def ones(n, dtype):
    return torch.ones(n, dtype=dtype)


def zeros(n, dtype):
    return torch.zeros(n, dtype=dtype)


class Linear:
    def __init__(self, n_in, n_out, dtype, bias=True):
        self.weight = param((n_out, n_in), dtype, 1.0 / math.sqrt(n_in))
        self.bias = param((n_out,), dtype, 0.01) if bias else None

    def __call__(self, x):
        return F.linear(x, self.weight, self.bias)

    def tensors(self):
        return [self.weight] + ([self.bias] if self.bias is not None else [])


class LayerNorm:
    def __init__(self, n, eps, dtype):
        self.weight, self.bias, self.eps = ones(n, dtype), zeros(n, dtype), eps

    def __call__(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)

    def tensors(self):
        return [self.weight, self.bias]


class RMSNorm:
    """transformers' Qwen2RMSNorm: normalised in float32, cast back, then scaled."""

    def __init__(self, n, eps, dtype):
        self.weight, self.eps = ones(n, dtype), eps

    def __call__(self, x):
        dtype = x.dtype
        h = x.to(torch.float32)
        var = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(var + self.eps)
        return self.weight * h.to(dtype)

    def tensors(self):
        return [self.weight]


def eager_attention(q, k, v, mask, scale):
    """transformers' eager_attention_forward: scores, additive mask, softmax in float32, cast back."""
    w = torch.matmul(q, k.transpose(2, 3)) * scale
    if mask is not None:
        w = w + mask
    w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(w, v)


# ---------------------------------------------------------------- SigLIP vision tower


class SiglipLayer:
    def __init__(self, c, dtype):
        h = c["hidden"]
        self.ln1, self.ln2 = LayerNorm(h, c["eps"], dtype), LayerNorm(h, c["eps"], dtype)
        self.q, self.k, self.v, self.o = (Linear(h, h, dtype) for _ in range(4))
        self.fc1, self.fc2 = Linear(h, c["inter"], dtype), Linear(c["inter"], h, dtype)
        self.heads = c["heads"]

    def __call__(self, x):
        B, L, H = x.shape
        D = H // self.heads
        n = self.ln1(x)
        split = lambda t: t.view(B, L, self.heads, D).transpose(1, 2)  # noqa: E731
        a = eager_attention(split(self.q(n)), split(self.k(n)), split(self.v(n)), None, D**-0.5)
        x = x + self.o(a.transpose(1, 2).reshape(B, L, H))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))

    def tensors(self):
        return [t for m in (self.ln1, self.ln2, self.q, self.k, self.v, self.o, self.fc1, self.fc2) for t in m.tensors()]


class SiglipHead:
    """SiglipMultiheadAttentionPoolingHead (runs in HF's forward; its output is not used by TinyLLaVA)."""

    def __init__(self, c, dtype):
        h = c["hidden"]
        self.probe = param((1, 1, h), dtype)
        self.attn = torch.nn.MultiheadAttention(h, c["heads"], batch_first=True).to(dtype)
        self.ln = LayerNorm(h, c["eps"], dtype)
        self.fc1, self.fc2 = Linear(h, c["inter"], dtype), Linear(c["inter"], h, dtype)

    def __call__(self, x):
        p = self.probe.expand(x.shape[0], -1, -1)
        h = self.attn(p, x, x, need_weights=False)[0]
        return h + self.fc2(F.gelu(self.fc1(self.ln(h)), approximate="tanh"))

    def tensors(self):
        return [self.probe, *self.attn.parameters(), *self.ln.tensors(), *self.fc1.tensors(), *self.fc2.tensors()]


class SiglipVision:
    def __init__(self, c, dtype, full_forward):
        self.c, self.dtype, self.full = c, dtype, full_forward
        h, p = c["hidden"], c["patch"]
        self.patch_w = param((h, 3, p, p), dtype, 1.0 / math.sqrt(3 * p * p))
        self.patch_b = param((h,), dtype, 0.01)
        self.n_patches = (c["image"] // p) ** 2
        self.pos = param((self.n_patches, h), dtype)
        self.layers = [SiglipLayer(c, dtype) for _ in range(c["layers"])]
        self.post_ln = LayerNorm(h, c["eps"], dtype)
        self.head = SiglipHead(c, dtype) if full_forward else None

    def __call__(self, pixels):
        """hidden_states[-2] (the output of layer N−1). `full`: runs what HF's SiglipVisionModel forward runs with
        output_hidden_states=True (all layers, post_layernorm, pooling head); otherwise only the layers it needs."""
        x = F.conv2d(pixels.to(self.dtype), self.patch_w, self.patch_b, stride=self.c["patch"])
        x = x.flatten(2).transpose(1, 2) + self.pos
        n = len(self.layers) if self.full else len(self.layers) - 1
        selected = x if len(self.layers) == 1 else None  # hidden_states[-2] of one layer: the embeddings
        for i in range(n):
            x = self.layers[i](x)
            if i == len(self.layers) - 2:
                selected = x
        if self.full:
            last = self.post_ln(x)
            self.head(last)
        return selected

    def tensors(self):
        ts = [self.patch_w, self.patch_b, self.pos, *self.post_ln.tensors()]
        ts += [t for layer in self.layers for t in layer.tensors()]
        return ts + (self.head.tensors() if self.head else [])


class Connector:
    """Factory's mlp2x_gelu: Linear → GELU → Linear."""

    def __init__(self, n_in, n_out, dtype):
        self.l1, self.l2 = Linear(n_in, n_out, dtype), Linear(n_out, n_out, dtype)

    def __call__(self, x):
        return self.l2(F.gelu(self.l1(x)))

    def tensors(self):
        return self.l1.tensors() + self.l2.tensors()


# ---------------------------------------------------------------- decoders (Qwen2, Phi-2) with a KV cache


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Rotary:
    def __init__(self, dim, theta):
        self.dim = dim
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))

    def __call__(self, positions, dtype):
        freqs = positions[:, None].float() * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype)[None, None], emb.sin().to(dtype)[None, None]


def apply_rope(x, cos, sin, rot):
    if rot == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    xr, xp = x[..., :rot], x[..., rot:]
    return torch.cat((xr * cos + rotate_half(xr) * sin, xp), dim=-1)


class Attention:
    def __init__(self, c, dtype, out_bias):
        h, self.heads, self.kv = c["hidden"], c["heads"], c["kv_heads"]
        self.d = h // self.heads
        self.q = Linear(h, self.heads * self.d, dtype)
        self.k = Linear(h, self.kv * self.d, dtype)
        self.v = Linear(h, self.kv * self.d, dtype)
        self.o = Linear(self.heads * self.d, h, dtype, bias=out_bias)

    def __call__(self, x, cos, sin, rot, mask, cache):
        B, L, _ = x.shape
        q = self.q(x).view(B, L, self.heads, self.d).transpose(1, 2)
        k = self.k(x).view(B, L, self.kv, self.d).transpose(1, 2)
        v = self.v(x).view(B, L, self.kv, self.d).transpose(1, 2)
        q, k = apply_rope(q, cos, sin, rot), apply_rope(k, cos, sin, rot)
        if cache[0] is not None:
            k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
        cache[0], cache[1] = k, v
        if self.kv != self.heads:  # repeat_kv
            n = self.heads // self.kv
            k = k[:, :, None].expand(B, self.kv, n, k.shape[2], self.d).reshape(B, self.heads, k.shape[2], self.d)
            v = v[:, :, None].expand(B, self.kv, n, v.shape[2], self.d).reshape(B, self.heads, v.shape[2], self.d)
        a = eager_attention(q, k, v, mask, self.d**-0.5)
        return self.o(a.transpose(1, 2).reshape(B, L, self.heads * self.d))

    def tensors(self):
        return self.q.tensors() + self.k.tensors() + self.v.tensors() + self.o.tensors()


class Decoder:
    def __init__(self, c, dtype):
        self.c, self.dtype = c, dtype
        h, phi = c["hidden"], c["family"] == "phi"
        self.phi = phi
        self.embed = param((c["vocab"], h), dtype)
        self.rot = int(h // c["heads"] * c["partial_rotary"])
        self.rope = Rotary(self.rot, c["theta"])
        self.layers = []
        for _ in range(c["layers"]):
            if phi:
                layer = dict(ln=LayerNorm(h, c["eps"], dtype), attn=Attention(c, dtype, out_bias=True),
                             fc1=Linear(h, c["inter"], dtype), fc2=Linear(c["inter"], h, dtype))
            else:
                layer = dict(ln1=RMSNorm(h, c["eps"], dtype), attn=Attention(c, dtype, out_bias=False),
                             ln2=RMSNorm(h, c["eps"], dtype), gate=Linear(h, c["inter"], dtype, bias=False),
                             up=Linear(h, c["inter"], dtype, bias=False), down=Linear(c["inter"], h, dtype, bias=False))
            self.layers.append(layer)
        self.norm = LayerNorm(h, c["eps"], dtype) if phi else RMSNorm(h, c["eps"], dtype)
        self.lm_head = None if c["tied"] else Linear(h, c["vocab"], dtype, bias=phi)

    def new_cache(self):
        return [[None, None] for _ in self.layers]

    def forward(self, embeds, start, cache, last_only=True):
        """embeds [1, L, hidden] at positions start … start+L−1 → logits of the last position [1, vocab] (or of every
        position [1, L, vocab])."""
        L = embeds.shape[1]
        pos = torch.arange(start, start + L)
        cos, sin = self.rope(pos, embeds.dtype)
        mask = None
        if L > 1:  # causal mask over the cache + new tokens, additive (dtype's lowest value), as transformers
            S = start + L
            mask = torch.full((L, S), torch.finfo(embeds.dtype).min, dtype=embeds.dtype).triu(start + 1)[None, None]
        x = embeds
        for layer, kv in zip(self.layers, cache):
            if self.phi:  # parallel block: x + attn(ln(x)) + mlp(ln(x))
                n = layer["ln"](x)
                a = layer["attn"](n, cos, sin, self.rot, mask, kv)
                m = layer["fc2"](F.gelu(layer["fc1"](n), approximate="tanh"))  # gelu_new
                x = x + a + m
            else:
                x = x + layer["attn"](layer["ln1"](x), cos, sin, self.rot, mask, kv)
                n = layer["ln2"](x)
                x = x + layer["down"](F.silu(layer["gate"](n)) * layer["up"](n))
        h = self.norm(x)
        if last_only:
            h = h[:, -1, :]  # logits_to_keep = 1
        return self.lm_head(h) if self.lm_head else F.linear(h, self.embed)

    def tensors(self):
        ts = [self.embed, *self.norm.tensors()] + (self.lm_head.tensors() if self.lm_head else [])
        for layer in self.layers:
            ts += [t for m in layer.values() for t in m.tensors()]
        return ts


# ---------------------------------------------------------------- checking this code against the reference fixtures


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    dt = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        buf = bytearray(raw[8 + n + s : 8 + n + e])
        out[k] = torch.frombuffer(buf, dtype=dt[v["dtype"]]).reshape(v["shape"]) if buf else torch.zeros(v["shape"])
    return out


def fixture_shapes(cfg):
    v, t = cfg["vision_config"], cfg["text_config"]
    rp = t.get("rope_parameters") or {}
    vision = dict(hidden=v["hidden_size"], inter=v["intermediate_size"], layers=v["num_hidden_layers"],
                  heads=v["num_attention_heads"], image=v["image_size"], patch=v["patch_size"],
                  eps=v.get("layer_norm_eps", 1e-6))
    family = {"qwen2": "qwen2", "phi": "phi"}[t["model_type"]]
    llm = dict(family=family, vocab=t["vocab_size"], hidden=t["hidden_size"], inter=t["intermediate_size"],
               layers=t["num_hidden_layers"], heads=t["num_attention_heads"],
               kv_heads=t.get("num_key_value_heads") or t["num_attention_heads"],
               theta=rp.get("rope_theta", t.get("rope_theta", 10000.0)),
               eps=t["layer_norm_eps"] if family == "phi" else t["rms_norm_eps"],
               partial_rotary=rp.get("partial_rotary_factor", t.get("partial_rotary_factor", 1.0)),
               tied=t.get("tie_word_embeddings", family == "qwen2"))
    return vision, llm


def load_fixture_weights(vision, connector, llm, sd):
    """Factory's checkpoint layout (vision_tower._vision_tower.vision_model.*, connector._connector.*,
    language_model.*) into the plain-torch modules; every checkpoint tensor must be used."""
    used = set()

    def get(k):
        used.add(k)
        return sd[k].to(llm.dtype)

    def lin(m, prefix, bias=True):
        m.weight = get(prefix + ".weight")
        m.bias = get(prefix + ".bias") if bias and prefix + ".bias" in sd else None

    def norm(m, prefix):
        m.weight = get(prefix + ".weight")
        if hasattr(m, "bias"):
            m.bias = get(prefix + ".bias")

    V = "vision_tower._vision_tower.vision_model."
    vision.patch_w, vision.patch_b = get(V + "embeddings.patch_embedding.weight"), get(V + "embeddings.patch_embedding.bias")
    vision.pos = get(V + "embeddings.position_embedding.weight")
    for i, L in enumerate(vision.layers):
        p = f"{V}encoder.layers.{i}."
        norm(L.ln1, p + "layer_norm1")
        norm(L.ln2, p + "layer_norm2")
        for m, n in ((L.q, "q_proj"), (L.k, "k_proj"), (L.v, "v_proj"), (L.o, "out_proj")):
            lin(m, p + "self_attn." + n)
        lin(L.fc1, p + "mlp.fc1")
        lin(L.fc2, p + "mlp.fc2")
    norm(vision.post_ln, V + "post_layernorm")
    if vision.head is not None:
        h = vision.head
        h.probe = get(V + "head.probe")
        with torch.no_grad():
            for n in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"):
                dict(h.attn.named_parameters())[n].copy_(get(V + "head.attention." + n))
        norm(h.ln, V + "head.layernorm")
        lin(h.fc1, V + "head.mlp.fc1")
        lin(h.fc2, V + "head.mlp.fc2")
    else:
        used.update(k for k in sd if k.startswith(V + "head."))
    lin(connector.l1, "connector._connector.0")
    lin(connector.l2, "connector._connector.2")
    T = "language_model."
    llm.embed = get(T + "model.embed_tokens.weight")
    for i, L in enumerate(llm.layers):
        p = f"{T}model.layers.{i}."
        a = L["attn"]
        for m, n in ((a.q, "q_proj"), (a.k, "k_proj"), (a.v, "v_proj")):
            lin(m, p + "self_attn." + n)
        if llm.phi:
            lin(a.o, p + "self_attn.dense")
            norm(L["ln"], p + "input_layernorm")
            lin(L["fc1"], p + "mlp.fc1")
            lin(L["fc2"], p + "mlp.fc2")
        else:
            lin(a.o, p + "self_attn.o_proj")
            norm(L["ln1"], p + "input_layernorm")
            norm(L["ln2"], p + "post_attention_layernorm")
            for n in ("gate", "up", "down"):
                lin(L[n], p + f"mlp.{n}_proj")
    norm(llm.norm, T + ("model.final_layernorm" if llm.phi else "model.norm"))
    if llm.lm_head is not None:
        lin(llm.lm_head, T + "lm_head")
    unused = sorted(set(sd) - used)
    if unused:
        raise SystemExit(f"check: checkpoint tensors not used: {unused[:8]}")


def check_fixture(folder, vision_mode):
    """Runs this file's model code on a TinyLLaVA Factory reference fixture (float64) and compares it with the
    reference outputs that transformers + Factory recorded: vision features, image features, logits, greedy tokens
    (decoded here with the KV cache)."""
    cfg = json.load(open(os.path.join(folder, "config.json")))
    golden = json.load(open(os.path.join(folder, "golden.json")))
    g = read_safetensors(os.path.join(folder, "golden.safetensors"))
    sd = read_safetensors(os.path.join(folder, "model.safetensors"))
    vc, lc = fixture_shapes(cfg)
    dtype = torch.float64
    with torch.inference_mode():
        vision = SiglipVision(vc, dtype, vision_mode == "full")
        connector = Connector(vc["hidden"], lc["hidden"], dtype)
        llm = Decoder(lc, dtype)
        load_fixture_weights(vision, connector, llm, sd)
        selected = vision(g["pixel_values"])[:, 1:]
        feats = connector(selected)
        ids = g["input_ids"]
        start, n = golden["image_start"], golden["image_tokens"]
        embeds = F.embedding(ids, llm.embed)
        embeds = torch.cat((embeds[:, :start], feats, embeds[:, start + n :]), dim=1)
        cache = llm.new_cache()
        logits = llm.forward(embeds, 0, cache, last_only=False)
        nxt = int(logits[0, -1].argmax())
        tokens, pos = [nxt], embeds.shape[1]
        for _ in range(len(golden["greedy_ids"]) - 1):
            nxt = int(llm.forward(F.embedding(torch.tensor([[nxt]]), llm.embed), pos, cache).argmax(-1))
            tokens.append(nxt)
            pos += 1

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max())

    out = dict(
        mode="check",
        fixture=os.path.basename(os.path.normpath(folder)),
        vision_selected_rel=rel(selected, g["vision_selected"]),
        image_features_rel=rel(feats, g["image_features"]),
        logits_rel=rel(logits, g["logits"]),
        greedy_match=tokens == golden["greedy_ids"],
        greedy=tokens,
    )
    # float64 except where transformers computes in float32 (RoPE cos/sin, RMSNorm, softmax): Debian's torch takes
    # float32 cos/sin from SLEEF, the reference's PyTorch 2.x from MKL VML, whose last bits differ → logits ~1e-7
    out["ok"] = (
        out["greedy_match"]
        and max(out["vision_selected_rel"], out["image_features_rel"]) < 1e-12
        and out["logits_rel"] < 1e-6
    )
    print(json.dumps(out))
    return out["ok"]


def mb(tensors):
    return sum(t.numel() * t.element_size() for t in tensors) / 1024**2


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="qwen2-0.5b-siglip")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-text-tokens", type=int, default=40)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1, help="runs of the whole measurement; the best of each is kept")
    ap.add_argument("--vision", choices=["needed", "full"], default="needed",
                    help="needed: layers up to hidden_states[-2] (the work TinyLLaVA needs, as our engine); "
                         "full: everything HF's SiglipVisionModel forward runs (all layers, post_layernorm, head)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check-fixture", metavar="DIR", action="append",
                    help="instead of timing: run this code on a TinyLLaVA Factory reference fixture folder (float64) "
                         "and compare with its recorded outputs (repeatable)")
    a = ap.parse_args()
    if a.check_fixture:
        torch.set_num_threads(a.threads)
        ok = [check_fixture(d, a.vision) for d in a.check_fixture]
        sys.exit(0 if all(ok) else 1)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dtype = getattr(torch, a.dtype)
    p = PRESETS[a.preset]
    vc, lc = p["vision"], p["llm"]
    t0 = time.perf_counter()
    with torch.inference_mode():
        vision = SiglipVision(vc, dtype, a.vision == "full")
        connector = Connector(vc["hidden"], lc["hidden"], dtype)
        llm = Decoder(lc, dtype)
    build_s = time.perf_counter() - t0
    print(f"generate_ref.py: built {a.preset} ({a.dtype}) in {build_s:.1f} s", file=sys.stderr)

    g = torch.Generator().manual_seed(a.seed + 1)
    pixels = torch.rand((1, 3, vc["image"], vc["image"]), generator=g) * 2 - 1
    text = torch.randint(0, lc["vocab"], (1, a.prompt_text_tokens), generator=g)
    best = {}
    tokens = []
    for _ in range(a.repeats):
        with torch.inference_mode():
            t0 = time.perf_counter()
            feats = vision(pixels)[:, 1:]  # Factory's "patch": drop the first token
            t1 = time.perf_counter()
            image = connector(feats)
            t2 = time.perf_counter()
            # Factory's splice: [image features, text]; prefill builds the KV cache and the first token's logits
            embeds = torch.cat((image.to(dtype), F.embedding(text, llm.embed)), dim=1)
            cache = llm.new_cache()
            t3 = time.perf_counter()
            logits = llm.forward(embeds, 0, cache)
            nxt = int(logits.argmax(-1))
            t4 = time.perf_counter()
            tokens = [nxt]
            pos = embeds.shape[1]
            for _ in range(a.new_tokens):
                logits = llm.forward(F.embedding(torch.tensor([[nxt]]), llm.embed), pos, cache)
                nxt = int(logits.argmax(-1))
                tokens.append(nxt)
                pos += 1
            t5 = time.perf_counter()
        run = dict(vision_ms=(t1 - t0) * 1e3, connector_ms=(t2 - t1) * 1e3, prefill_ms=(t4 - t3) * 1e3,
                   decode_s=t5 - t4)
        for k, v in run.items():
            best[k] = min(best.get(k, math.inf), v)
        del cache, logits
    prefill_tokens = feats.shape[1] + a.prompt_text_tokens
    out = dict(
        engine="pytorch-eager",
        torch=torch.__version__,
        preset=a.preset,
        dtype=a.dtype,
        threads=torch.get_num_threads(),
        vision=a.vision,
        image_tokens=int(feats.shape[1]),
        prompt_text_tokens=a.prompt_text_tokens,
        prefill_tokens=int(prefill_tokens),
        new_tokens=a.new_tokens,
        repeats=a.repeats,
        vision_ms=round(best["vision_ms"], 2),
        connector_ms=round(best["connector_ms"], 2),
        vision_encode_ms=round(best["vision_ms"] + best["connector_ms"], 2),
        prefill_ms=round(best["prefill_ms"], 2),
        prefill_tok_s=round(prefill_tokens / best["prefill_ms"] * 1e3, 2),
        decode_tok_s=round(a.new_tokens / best["decode_s"], 3),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        weights_mb=round(mb(vision.tensors()) + mb(connector.tensors()) + mb(llm.tensors()), 1),
        llm_weights_mb=round(mb(llm.tensors()), 1),
        vision_weights_mb=round(mb(vision.tensors()), 1),
        build_s=round(build_s, 2),
        generated_head=tokens[:8],
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
