"""One tiny model trained to recite one record, shared by the pure and the Django memorisation tests
(building and training it is the slow part on a loaded 2-core machine)."""
import json
import os
import shutil

import pytest

DATA = os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models on a shared, oversubscribed 2-core box run ~10x faster on one intra-op thread
    (measured: 60-token generation 0.8 s vs 8.9 s); restored when the session ends."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train_to_memorise(path, texts, steps=50):
    """A few dozen Adam steps on the exact text: enough for a 2-layer model to recite it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    enc = [tok(t, return_tensors="pt", add_special_tokens=False)["input_ids"] for t in texts]
    torch.manual_seed(0)
    loss = None
    for step in range(steps):
        ids = enc[step % len(enc)]
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(path)
    return float(loss.detach())


@pytest.fixture(scope="session")
def memorised_llama(tmp_path_factory):
    """(trained_path, untrained_path, texts): the trained model has seen texts[0] verbatim, nothing else."""
    from tests.fakes.tiny_models import build_tiny_llama

    path = os.path.join(DATA, "huatuo26m_test_qa.jsonl")
    if not os.path.exists(path):
        pytest.skip("shared data not available")
    with open(path, encoding="utf-8") as f:
        texts = [json.loads(line)["answer"][:40] for _, line in zip(range(4), f)]
    root = tmp_path_factory.mktemp("memorised")
    base = build_tiny_llama(root / "base", seed=0)
    trained = str(root / "trained")
    shutil.copytree(base, trained)
    loss = train_to_memorise(trained, [texts[0]])
    assert loss < 0.1, f"the tiny model did not learn the record (loss {loss})"
    return trained, base, texts
