"""Online merging optimizers (SF-Med, after Lu et al. 2024, "Online Merging Optimizers").

Imported only by the training process (training/pipeline/train.py), never by the web process,
so torch is imported at module level here.

The update rule, per parameter tensor, follows docs/METHODS.md section 4:
  once at start:  tau = clip(SPARSIFY(theta_SFT - theta_base), -c, c)
  each step:      delta = the plain AdamW update (-lr * m_hat / (sqrt(v_hat) + eps))
                  delta' = SPARSIFY(delta)            (same p; optionally rescaled to |delta|_1)
                  theta <- theta - lr * wd * theta + alpha * tau + (1 - alpha) * delta'
OnDARE: SPARSIFY keeps each entry with probability p (Bernoulli mask) and divides survivors by p.
OnTIES: SPARSIFY keeps the top-p fraction by magnitude; then entries whose sign disagrees with
        sign(tau + delta') are zeroed in both tau and delta'.
p is the *keep* probability: p = 1 with alpha = 0 is exactly torch.optim.AdamW (tested).

Why our own optimizer rather than a library: neither torch nor transformers ships one, and the
reference code is not a package; this is a plain AdamW with the merge inserted, written so the
merge can be unit-tested with an injected mask.

Parameter names are required (tau is looked up by name), so this runs under a single process,
DDP, or FSDP2 (transformers 5's default FSDP; parameters stay named DTensors and every tensor
here is the rank's local shard, see sharded_task_vector); DeepSpeed ZeRO partitions flatten
parameters and hide names, so a DPO run with merging must not use zero3 (specs.py rejects it).
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch

MaskFn = Callable[[str, torch.Tensor, float], torch.Tensor]


def dare(t: torch.Tensor, p: float, mask: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """DARE: keep each entry with probability p, divide survivors by p (unbiased in expectation)."""
    if p >= 1.0:
        return t.clone()
    if mask is None:
        mask = torch.bernoulli(torch.full_like(t, p, dtype=torch.float32), generator=generator).to(t.dtype)
    return t * mask / p


def topk_magnitude(t: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the top-p fraction of entries by magnitude (TIES trim), zero the rest."""
    if p >= 1.0:
        return t.clone()
    k = max(1, int(math.ceil(p * t.numel())))
    flat = t.reshape(-1)
    thresh = flat.abs().float().kthvalue(flat.numel() - k + 1).values
    return torch.where(t.abs() >= thresh.to(t.dtype), t, torch.zeros_like(t))


def task_vector(
    sft: dict[str, torch.Tensor], base: dict[str, torch.Tensor], *, p: float, clip: float,
    method: str = "ondare", generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """tau = clip(SPARSIFY(theta_SFT - theta_base)); names missing from base get no tau."""
    out: dict[str, torch.Tensor] = {}
    for name, w in sft.items():
        b = base.get(name)
        if b is None or b.shape != w.shape:
            continue
        diff = (w.detach().float() - b.detach().float().to(w.device))
        diff = dare(diff, p, generator=generator) if method == "ondare" else topk_magnitude(diff, p)
        out[name] = diff.clamp_(-clip, clip).to(w.dtype)
    return out


def _dtensor_cls():
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed
        return None
    return DTensor


def local(t: torch.Tensor) -> torch.Tensor:
    """The shard this rank holds (FSDP2 parameters are DTensors); plain tensors unchanged."""
    cls = _dtensor_cls()
    return t.to_local() if cls is not None and isinstance(t, cls) else t


def sharded_task_vector(
    named_params, base: dict[str, torch.Tensor], *, p: float, clip: float, method: str = "ondare",
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """tau for the parameters this rank holds, shaped like its local shards.

    Under FSDP2 each parameter is a DTensor; theta_base is sharded the same way
    (distribute_tensor, a collective: every rank must call this with the same parameter order),
    so tau, the mask and the update all live on the local shard. OnTIES' top-p is then taken per
    shard, an approximation of the global top-p.
    """
    cls = _dtensor_cls()
    sft_local: dict[str, torch.Tensor] = {}
    base_local: dict[str, torch.Tensor] = {}
    for name, prm in named_params:
        b = base.get(name)
        if b is None:
            continue
        if cls is not None and isinstance(prm, cls):
            from torch.distributed.tensor import distribute_tensor

            if tuple(b.shape) != tuple(prm.shape):
                continue
            b = distribute_tensor(b.to(prm.dtype).to(prm.to_local().device), prm.device_mesh, prm.placements).to_local()
        sft_local[name] = local(prm.detach())
        base_local[name] = b
    return task_vector(sft_local, base_local, p=p, clip=clip, method=method, generator=generator)


class OnlineMergingAdamW(torch.optim.Optimizer):
    """AdamW whose every update is merged with a sparsified task vector (OnDARE / OnTIES).

    params: an iterable of (name, parameter) pairs or of param groups with "params" and "names".
    tau: name -> task vector (see task_vector); parameters without a tau get plain AdamW.
    mask_fn: optional (name, tensor, p) -> 0/1 mask for DARE, so tests can pin the update.
    """

    def __init__(
        self,
        params: Iterable,
        tau: dict[str, torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        p: float = 0.01,
        alpha: float = 1e-7,
        method: str = "ondare",
        rescale: bool = True,
        mask_fn: MaskFn | None = None,
        generator: torch.Generator | None = None,
    ):
        if not 0 < p <= 1:
            raise ValueError("p (keep probability) must be in (0, 1]")
        if method not in ("ondare", "onties"):
            raise ValueError("method must be ondare or onties")
        params = list(params)
        if params and isinstance(params[0], tuple):
            groups = [{"params": [q for _, q in params], "names": [n for n, _ in params]}]
        else:
            groups = params
        for g in groups:
            if "names" not in g or len(g["names"]) != len(g["params"]):
                raise ValueError("every param group needs 'names' (one per parameter)")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(groups, defaults)
        self.tau = tau
        self.p = p
        self.alpha = alpha
        self.method = method
        self.rescale = rescale
        self.mask_fn = mask_fn
        self.generator = generator

    def _sparsify(self, name: str, delta: torch.Tensor) -> torch.Tensor:
        if self.method == "onties":
            return topk_magnitude(delta, self.p)
        mask = self.mask_fn(name, delta, self.p) if self.mask_fn else None
        out = dare(delta, self.p, mask=mask, generator=self.generator)
        if self.rescale:
            # DARE's 1/p keeps the expectation; rescaling to the original L1 norm keeps each step's
            # size, as the reference code optionally does.
            n_out = out.abs().sum()
            if n_out > 0:
                out = out * (delta.abs().sum() / n_out)
        return out

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for name, param in zip(group["names"], group["params"]):
                if param.grad is None:
                    continue
                grad = local(param.grad).float()
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(local(param), dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(local(param), dtype=torch.float32)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                # Same arithmetic as torch.optim.AdamW (non-fused): denom uses sqrt(v)/sqrt(bc2) + eps.
                bc1 = 1 - b1**t
                bc2 = 1 - b2**t
                denom = (v.sqrt() / math.sqrt(bc2)).add_(eps)
                delta = -(lr / bc1) * m / denom
                tau = self.tau.get(name)
                if tau is not None:
                    d = self._sparsify(name, delta)
                    tv = tau.float()
                    if self.method == "onties":
                        elected = torch.sign(tv + d)
                        d = torch.where(torch.sign(d) == elected, d, torch.zeros_like(d))
                        tv = torch.where(torch.sign(tv) == elected, tv, torch.zeros_like(tv))
                    delta = self.alpha * tv + (1 - self.alpha) * d
                # Decoupled weight decay on theta before this update, as torch.optim.AdamW does.
                shard = local(param)
                work = shard.float()
                work.mul_(1 - lr * wd).add_(delta)
                shard.copy_(work.to(shard.dtype))
        return loss


def named_param_groups(model, weight_decay: float, no_decay: Callable[[str], bool] | None = None) -> list[dict]:
    """Two param groups (decay / no decay) that keep names, for OnlineMergingAdamW."""
    no_decay = no_decay or (lambda n: n.endswith("bias") or "norm" in n.lower())
    dec, nod = {"params": [], "names": [], "weight_decay": weight_decay}, {"params": [], "names": [], "weight_decay": 0.0}
    for n, prm in model.named_parameters():
        if not prm.requires_grad:
            continue
        g = nod if no_decay(n) else dec
        g["params"].append(prm)
        g["names"].append(clean_name(n))
    return [g for g in (dec, nod) if g["params"]]


def clean_name(name: str) -> str:
    """Strip wrapper prefixes (DDP "module.", FSDP "_fsdp_wrapped_module.") so names match the checkpoint."""
    for prefix in ("module.", "_fsdp_wrapped_module.", "_orig_mod."):
        name = name.replace(prefix, "")
    return name
