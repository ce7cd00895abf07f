"""Pins the online-merging update rule on small tensors (docs/METHODS.md section 4)."""
import math

import pytest

torch = pytest.importorskip("torch")

from training.pipeline.merging import OnlineMergingAdamW, dare, task_vector, topk_magnitude  # noqa: E402


def _pair(seed=0, shape=(4, 3)):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g)
    grads = [torch.randn(shape, generator=g) for _ in range(3)]
    return w, grads


def _run(opt_factory, w0, grads):
    p = torch.nn.Parameter(w0.clone())
    opt = opt_factory(p)
    for gr in grads:
        p.grad = gr.clone()
        opt.step()
    return p.detach()


def test_keep_all_and_zero_alpha_is_exactly_adamw():
    w0, grads = _pair()
    tau = {"w": torch.randn_like(w0)}
    ours = _run(lambda p: OnlineMergingAdamW([("w", p)], tau, lr=0.1, weight_decay=0.05, p=1.0, alpha=0.0), w0, grads)
    ref = _run(lambda p: torch.optim.AdamW([p], lr=0.1, weight_decay=0.05, foreach=False), w0, grads)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert not torch.allclose(ours, w0)


def test_parameter_without_task_vector_gets_plain_adamw():
    w0, grads = _pair(1)
    ours = _run(lambda p: OnlineMergingAdamW([("w", p)], {}, lr=0.05, weight_decay=0.1, p=0.01, alpha=0.3), w0, grads)
    ref = _run(lambda p: torch.optim.AdamW([p], lr=0.05, weight_decay=0.1, foreach=False), w0, grads)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_known_mask_gives_known_update():
    # One step of Adam from zero state: m_hat = g, v_hat = g^2, so delta = -lr * g / (|g| + eps).
    lr, eps, wd, alpha, p = 0.1, 1e-8, 0.2, 0.25, 0.5
    w0 = torch.tensor([1.0, -2.0, 3.0, 0.5])
    g = torch.tensor([0.5, 1.0, -2.0, 4.0])
    tau = torch.tensor([0.3, -0.1, 0.2, 0.4])
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    prm = torch.nn.Parameter(w0.clone())
    opt = OnlineMergingAdamW(
        [("w", prm)], {"w": tau}, lr=lr, eps=eps, weight_decay=wd, p=p, alpha=alpha, rescale=False,
        mask_fn=lambda name, t, pp: mask,
    )
    prm.grad = g.clone()
    opt.step()
    delta = -lr * g / (g.abs() + eps)
    expected = w0 * (1 - lr * wd) + alpha * tau + (1 - alpha) * (delta * mask / p)
    assert torch.allclose(prm.detach(), expected, atol=1e-7)


def test_rescale_restores_l1_norm_of_update():
    lr = 0.1
    w0 = torch.zeros(4)
    g = torch.tensor([1.0, -1.0, 2.0, 3.0])
    mask = torch.tensor([1.0, 0.0, 0.0, 0.0])
    prm = torch.nn.Parameter(w0.clone())
    opt = OnlineMergingAdamW([("w", prm)], {"w": torch.zeros(4)}, lr=lr, weight_decay=0.0, p=0.5, alpha=0.0,
                             rescale=True, mask_fn=lambda *a: mask)
    prm.grad = g
    opt.step()
    # plain delta is -lr*sign(g) -> L1 = 4*lr; all of it lands on the one surviving entry.
    assert torch.allclose(prm.detach(), torch.tensor([-4 * lr, 0.0, 0.0, 0.0]), atol=1e-6)


def test_dare_is_unbiased_and_keeps_about_p():
    t = torch.ones(200_000)
    out = dare(t, 0.1, generator=torch.Generator().manual_seed(0))
    kept = (out != 0).float().mean().item()
    assert abs(kept - 0.1) < 0.01
    assert abs(out.mean().item() - 1.0) < 0.05
    assert torch.all((out == 0) | (out == 10.0))


def test_task_vector_is_clipped_sparsified_difference():
    sft = {"a": torch.tensor([5.0, 0.5, -3.0, 0.1]), "only_sft": torch.ones(2)}
    base = {"a": torch.zeros(4)}
    tau = task_vector(sft, base, p=1.0, clip=1.0)
    assert set(tau) == {"a"}
    assert torch.equal(tau["a"], torch.tensor([1.0, 0.5, -1.0, 0.1]))
    ties = task_vector(sft, base, p=0.5, clip=10.0, method="onties")
    assert torch.equal(ties["a"], torch.tensor([5.0, 0.0, -3.0, 0.0]))


def test_topk_magnitude_keeps_fraction():
    t = torch.tensor([0.1, -5.0, 2.0, -0.3, 4.0, 0.0, 1.0, -2.5])
    out = topk_magnitude(t, 0.25)
    assert torch.equal(out, torch.tensor([0.0, -5.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0]))


def test_onties_zeroes_entries_disagreeing_with_elected_sign():
    lr, alpha = 0.1, 0.5
    w0 = torch.zeros(4)
    g = torch.tensor([1.0, -1.0, 1.0, -1.0])  # delta = -lr*sign(g) = [-.1, .1, -.1, .1]
    tau = torch.tensor([0.3, 0.3, -0.3, -0.05])
    prm = torch.nn.Parameter(w0.clone())
    opt = OnlineMergingAdamW([("w", prm)], {"w": tau}, lr=lr, weight_decay=0.0, p=1.0, alpha=alpha, method="onties")
    prm.grad = g
    opt.step()
    delta = -lr * torch.sign(g)
    elected = torch.sign(tau + delta)  # [+, +, -, +]
    d = torch.where(torch.sign(delta) == elected, delta, torch.zeros(4))
    tv = torch.where(torch.sign(tau) == elected, tau, torch.zeros(4))
    assert torch.allclose(prm.detach(), alpha * tv + (1 - alpha) * d, atol=1e-6)
    assert prm.detach()[0].item() == pytest.approx(0.5 * 0.3)  # delta's entry disagreed, only tau left


def test_merging_pulls_weights_toward_sft_direction():
    # With zero gradient signal and alpha > 0, theta walks along tau.
    prm = torch.nn.Parameter(torch.zeros(3))
    tau = torch.tensor([1.0, -1.0, 0.5])
    opt = OnlineMergingAdamW([("w", prm)], {"w": tau}, lr=0.0, weight_decay=0.0, p=1.0, alpha=0.1)
    for _ in range(5):
        prm.grad = torch.zeros(3)
        opt.step()
    assert torch.allclose(prm.detach(), 5 * 0.1 * tau, atol=1e-6)


def test_rejects_bad_keep_probability_and_unnamed_groups():
    prm = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError):
        OnlineMergingAdamW([("w", prm)], {}, p=0.0)
    with pytest.raises(ValueError):
        OnlineMergingAdamW([{"params": [prm]}], {})
    assert math.isfinite(OnlineMergingAdamW([("w", prm)], {}).p)


def test_fsdp2_dtensor_parameters_use_their_local_shard(tmp_path):
    """Under FSDP2 parameters are DTensors: tau is sharded like them and the update is unchanged.

    One gloo rank here (the shard is the whole tensor), enough to run the DTensor code path;
    multi-rank FSDP needs GPUs and was not run.
    """
    dist = pytest.importorskip("torch.distributed")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    from training.pipeline.merging import sharded_task_vector

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        w0 = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
        base = {"w": torch.tensor([[0.5, -2.5], [3.0, 1.0]])}
        g = torch.tensor([[0.5, 1.0], [-2.0, 4.0]])
        mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])

        def run(param):
            tau = sharded_task_vector([("w", param)], base, p=1.0, clip=10.0)
            opt = OnlineMergingAdamW([("w", param)], tau, lr=0.1, weight_decay=0.1, p=0.5, alpha=0.2,
                                     rescale=False, mask_fn=lambda *a: mask)
            param.grad = distribute_tensor(g, mesh, [Shard(0)]) if isinstance(param, DTensor) else g.clone()
            opt.step()
            return tau["w"], param.full_tensor() if isinstance(param, DTensor) else param.detach()

        tau_d, out_d = run(torch.nn.Parameter(distribute_tensor(w0.clone(), mesh, [Shard(0)])))
        tau_p, out_p = run(torch.nn.Parameter(w0.clone()))
        assert torch.equal(tau_d, w0 - base["w"]) and torch.equal(tau_p, tau_d)
        assert torch.allclose(out_d, out_p, atol=1e-7)
        assert not torch.allclose(out_d, w0)
    finally:
        dist.destroy_process_group()
