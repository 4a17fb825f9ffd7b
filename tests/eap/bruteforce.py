"""A brute-force EAP-IG, written from docs/eap_ig.md alone, for checking the engine.

Everything is recomputed in float64 from the model's weights (RoPE tables in
float64, RMSNorm and softmax in float64: the HF modules compute some of these in
float32), with NO sharing: every destination (each query head's q, k and v
input, each MLP, the logits) reads the residual stream plus its OWN zero leaf
tensor, so autograd's gradient at that leaf is dL/dx_v "as if v read its own
copy of the residual stream". Keys and values are computed per query head
(ungrouped GQA). Then, literally::

    score(u->v) = mean_ex sum_pos (z_u - z'_u) . (1/m) sum_{k=1..m} dL/dleaf_v  at  e' + (k/m)(e - e')
"""

from __future__ import annotations

import numpy as np
import torch

from sparkql.runtime.eap.graph import Graph


def _rms(x, w, eps):
    return w * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class Reference:
    def __init__(self, model):
        cfg = model.config
        self.L = cfg.num_hidden_layers
        self.H = cfg.num_attention_heads
        self.K = cfg.num_key_value_heads
        self.dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.H
        self.D = cfg.hidden_size
        self.eps = cfg.rms_norm_eps
        theta = cfg.rope_parameters["rope_theta"]
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.dh, 2, dtype=torch.float64) / self.dh))
        f = lambda t: None if t is None else t.detach().to(torch.float64).clone()  # noqa: E731
        m = model.model
        self.embed = f(m.embed_tokens.weight)
        self.layers = []
        for lay in m.layers:
            a = lay.self_attn
            self.layers.append(dict(
                ln1=f(lay.input_layernorm.weight), ln2=f(lay.post_attention_layernorm.weight),
                wq=f(a.q_proj.weight), bq=f(a.q_proj.bias), wk=f(a.k_proj.weight), bk=f(a.k_proj.bias),
                wv=f(a.v_proj.weight), bv=f(a.v_proj.bias), wo=f(a.o_proj.weight), bo=f(a.o_proj.bias),
                qn=f(a.q_norm.weight) if hasattr(a, "q_norm") else None,
                kn=f(a.k_norm.weight) if hasattr(a, "k_norm") else None,
                gate=f(lay.mlp.gate_proj.weight), up=f(lay.mlp.up_proj.weight), down=f(lay.mlp.down_proj.weight),
            ))
        self.lnf = f(m.norm.weight)
        self.lm_head = f(model.lm_head.weight)
        self.graph = Graph(self.L, self.H)

    def _rope(self, x):  # x: (s, dh)
        s = x.shape[0]
        ang = torch.arange(s, dtype=torch.float64)[:, None] * self.inv_freq[None]
        emb = torch.cat([ang, ang], -1)
        h = self.dh // 2
        rot = torch.cat([-x[:, h:], x[:, :h]], -1)
        return x * emb.cos() + rot * emb.sin()

    def forward(self, emb, leaves=None):
        """emb: (s, D). leaves: per destination index a (s, D) tensor added to what it reads.
        Returns last-position logits and the source outputs (n_sources, s, D)."""
        g, H, dh = self.graph, self.H, self.dh
        s = emb.shape[0]
        add = (lambda v: leaves[v]) if leaves is not None else (lambda v: 0.0)
        resid = emb
        outs = [emb]
        causal = torch.full((s, s), float("-inf"), dtype=torch.float64).triu(1)
        for l, P in enumerate(self.layers):
            head_out = []
            for h in range(H):
                kv = h // (H // self.K)
                rows = slice(h * dh, (h + 1) * dh)
                kvrows = slice(kv * dh, (kv + 1) * dh)
                nq = _rms(resid + add(g.qkv_dest(l, h, "q")), P["ln1"], self.eps)
                nk = _rms(resid + add(g.qkv_dest(l, h, "k")), P["ln1"], self.eps)
                nv = _rms(resid + add(g.qkv_dest(l, h, "v")), P["ln1"], self.eps)
                q = nq @ P["wq"][rows].T + (P["bq"][rows] if P["bq"] is not None else 0)
                k = nk @ P["wk"][kvrows].T + (P["bk"][kvrows] if P["bk"] is not None else 0)
                v = nv @ P["wv"][kvrows].T + (P["bv"][kvrows] if P["bv"] is not None else 0)
                if P["qn"] is not None:
                    q = _rms(q, P["qn"], self.eps)
                    k = _rms(k, P["kn"], self.eps)
                q, k = self._rope(q), self._rope(k)
                att = torch.softmax(q @ k.T / dh**0.5 + causal, -1)
                head_out.append((att @ v) @ P["wo"][:, rows].T)
            resid = resid + sum(head_out) + (P["bo"] if P["bo"] is not None else 0)
            outs += head_out
            n2 = _rms(resid + add(g.mlp_dest(l)), P["ln2"], self.eps)
            mlp = (torch.nn.functional.silu(n2 @ P["gate"].T) * (n2 @ P["up"].T)) @ P["down"].T
            resid = resid + mlp
            outs.append(mlp)
        nf = _rms(resid + add(g.logits_dest), self.lnf, self.eps)
        return nf[-1] @ self.lm_head.T, torch.stack(outs)

    def scores(self, examples, steps, metric="kl", targets=None, foils=None):
        """(n_sources, n_dests) float64 scores, brute force."""
        g = self.graph
        total = torch.zeros(g.n_sources, g.n_dests, dtype=torch.float64)
        for i, ex in enumerate(examples):
            e = self.embed[torch.tensor(ex.clean)]
            ec = self.embed[torch.tensor(ex.corrupt)]
            with torch.no_grad():
                lc, z = self.forward(e)
                _, zc = self.forward(ec)
            logp_clean = torch.log_softmax(lc, -1)
            delta = z - zc
            s = e.shape[0]
            gsum = torch.zeros(g.n_dests, s, self.D, dtype=torch.float64)
            for k in range(1, steps + 1):
                x = (ec + (k / steps) * (e - ec)).detach()
                leaves = [torch.zeros(s, self.D, dtype=torch.float64, requires_grad=True) for _ in range(g.n_dests)]
                logits, _ = self.forward(x, leaves)
                if metric == "kl":
                    lp = torch.log_softmax(logits, -1)
                    m = (logp_clean.exp() * (logp_clean - lp)).sum()
                elif metric == "logit_diff":
                    m = logits[targets[i]] - logits[foils[i]]
                else:
                    m = torch.softmax(logits, -1)[targets[i]]
                grads = torch.autograd.grad(m, leaves)
                gsum += torch.stack(grads)
            total += torch.einsum("usd,vsd->uv", delta, gsum) / steps
        total /= len(examples)
        return (total * torch.as_tensor(g.mask)).numpy()


def perturb_norms(model, seed=0):
    """Random RMSNorm (and q/k norm) weights, so a forgotten norm weight cannot go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype))


def random_examples(vocab, lengths, seed=0, lo=5):
    from sparkql.runtime.eap.engine import Example

    gen = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        c = torch.randint(lo, vocab, (n,), generator=gen).tolist()
        k = list(c)
        # corrupt a few positions, as a real corruption would
        for j in torch.randint(0, n, (max(1, n // 3),), generator=gen).tolist():
            k[j] = int(torch.randint(lo, vocab, (1,), generator=gen))
        out.append(Example(c, k))
    return out


def relerr(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())
