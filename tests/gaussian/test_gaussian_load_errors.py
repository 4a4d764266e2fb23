"""Corrupt or foreign model folders and checkpoints: a ValueError naming the file (a CLI message)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from rag_relax_plugins.cli import main
from rag_relax_plugins.embedders.gaussian import GaussianConfig, GaussianEmbedder
from rag_relax_plugins.training import gaussian_checkpoint as ckpt


@pytest.fixture
def good(tmp_path):
    GaussianEmbedder(GaussianConfig(backbone="hashing:64", output_dim=16, freeze="all"), device="cpu").save(tmp_path / "good")
    return tmp_path / "good"


@pytest.mark.parametrize(("name", "config", "head", "match"), [
    ("list_config", "[1, 2]", None, r"config.json: expected a JSON object"),
    ("foreign_config", json.dumps({"model_type": "bert", "hidden_size": 384}), None, r"config.json: not a Gaussian embedder config .*unknown keys"),
    ("bad_field", None, None, r"config.json: not a Gaussian embedder config .*dropout"),
    ("truncated_head", None, "truncate", r"head.safetensors: not a readable safetensors file"),
    ("other_head", None, "other", r"head.safetensors: does not fit the head"),
])
def test_bad_model_folder_names_the_file(good, tmp_path, name, config, head, match) -> None:
    folder = tmp_path / name
    shutil.copytree(good, folder)
    if name == "bad_field":
        data = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**data, "dropout": "high"}))
    elif config is not None:
        (folder / "config.json").write_text(config)
    if head == "truncate":
        (folder / "head.safetensors").write_bytes((good / "head.safetensors").read_bytes()[:100])
    elif head == "other":
        GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=16, freeze="all"), device="cpu").save(tmp_path / "o")
        shutil.copy(tmp_path / "o" / "head.safetensors", folder / "head.safetensors")
    with pytest.raises(ValueError, match=match):
        GaussianEmbedder.load(folder, device="cpu")
    eval_file = tmp_path / "eval.json"
    eval_file.write_text(json.dumps({"corpus": {"d": "x"}, "queries": {"q": "x"}, "qrels": {"q": {"d": 1}}}))
    assert main(["evaluate", "--model", str(folder), "--eval-file", str(eval_file), "--device", "cpu"]) == 2


def test_corrupt_checkpoint_files_name_the_file(good, tmp_path) -> None:
    model = GaussianEmbedder.load(good, device="cpu")
    opt = torch.optim.AdamW(model.head.parameters())
    model.head(torch.randn(2, 64)).sum().backward()
    opt.step()  # some optimiser state to save
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ck = tmp_path / "ck"
    ckpt.save_checkpoint(ck, model=model, optimizer=opt, scheduler=sched, predictor=None,
                         state={"epoch": 1, "step": 0, "best": 1.0, "best_epoch": 1, "history": {"step_loss": [], "train_loss": [], "val_loss": []}})

    def load():
        ckpt.load_checkpoint_state(ck, optimizer=opt, scheduler=sched, predictor=None)

    load()
    good_rng = (ck / "rng.safetensors").read_bytes()
    (ck / "rng.safetensors").write_bytes(good_rng[:50])
    with pytest.raises(ValueError, match=r"rng.safetensors: not a readable safetensors file"):
        load()
    (ck / "rng.safetensors").write_bytes(good_rng)
    (ck / "optimizer.safetensors").write_bytes(b"\0" * 40)
    with pytest.raises(ValueError, match=r"optimizer.safetensors: not a readable safetensors file"):
        load()
    (ck / "trainer_state.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"trainer_state.json: not a readable JSON file"):
        load()
    with pytest.raises(ValueError, match=r"trainer_state.json: not a readable JSON file"):
        ckpt.check_resume(ck, {})


def test_a_bad_keyword_override_is_not_blamed_on_the_file(good) -> None:
    with pytest.raises(ValueError, match=r"dropout") as err:
        GaussianEmbedder.load(good, device="cpu", dropout=1.5)
    assert "config.json" not in str(err.value) and "override" in str(err.value)


@pytest.mark.parametrize(("damage", "error", "match"), [
    ("missing", FileNotFoundError, r"its saved backbone folder 'backbone' is missing"),
    ("truncated_weights", ValueError, r"backbone: not a loadable sentence-transformers model \(.*header"),
    ("corrupt_config", ValueError, r"backbone: not a loadable sentence-transformers model \(.*config"),
])
def test_a_damaged_saved_backbone_is_named(good, tmp_path, minilm_path, damage, error, match) -> None:
    """A save with its own ``backbone/`` (a fine-tuned backbone) whose backbone is damaged: a raw
    SafetensorError (a traceback from ``rag-relax evaluate``) or, for a missing folder, the advice
    to install the offline MiniLM."""
    from pathlib import Path

    folder = tmp_path / damage
    shutil.copytree(good, folder)
    data = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**data, "backbone_subfolder": "backbone"}))
    if damage != "missing":
        (folder / "backbone").mkdir()
        for item in Path(minilm_path).iterdir():  # links, not 90 MB of copies, but for the damaged file
            (folder / "backbone" / item.name).symlink_to(item)
        name = "model.safetensors" if damage == "truncated_weights" else "config.json"
        (folder / "backbone" / name).unlink()
        (folder / "backbone" / name).write_bytes((Path(minilm_path) / name).read_bytes()[:100])
    with pytest.raises(error, match=match):
        GaussianEmbedder.load(folder, device="cpu")
    eval_file = tmp_path / "eval.json"
    eval_file.write_text(json.dumps({"corpus": {"d": "x"}, "queries": {"q": "x"}, "qrels": {"q": {"d": 1}}}))
    assert main(["evaluate", "--model", str(folder), "--eval-file", str(eval_file), "--device", "cpu"]) == 2


def test_a_load_overlapping_a_save_returns_the_whole_new_model(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A save of best_model/ (training) between a server's reads of config.json and the head gave
    one save's config with the other's weights, or a file missing mid-read."""
    import rag_relax_plugins.embedders.gaussian as gaussian

    def model(seed: int) -> GaussianEmbedder:
        torch.manual_seed(seed)
        return GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=8, head_init="random"), device="cpu")

    a, b = model(1), model(2)
    a.save(tmp_path / "best_model")
    real = gaussian.read_tensors
    reads: list[int] = []

    def save_meanwhile(path):  # type: ignore[no-untyped-def]
        reads.append(1)
        if len(reads) == 1:
            b.save(tmp_path / "best_model")
        return real(path)

    monkeypatch.setattr(gaussian, "read_tensors", save_meanwhile)
    loaded = GaussianEmbedder.load(tmp_path / "best_model", device="cpu")
    assert len(reads) == 2
    for got, want in zip(loaded.head.state_dict().values(), b.head.state_dict().values(), strict=True):
        assert torch.equal(got, want)


def test_the_folder_can_be_passed_by_keyword(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The re-read decorator took the folder by position: ``load(path=...)`` was an IndexError."""
    GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=8), device="cpu").save(tmp_path / "m")
    assert isinstance(GaussianEmbedder.load(path=tmp_path / "m", device="cpu"), GaussianEmbedder)
    with pytest.raises(FileNotFoundError, match="no Gaussian embedder"):
        GaussianEmbedder.load(path=tmp_path / "missing")


def test_cuda_generator_states_go_to_their_own_gpus_and_missing_gpus_are_skipped(
    good, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint saved where three GPUs were visible, resumed where one is: set_rng_state_all
    raised IndexError (torch indexes its per-GPU generators), and the string sort put cuda10
    before cuda2 (cuda10 is never restored now: no run uses it). No GPU here: torch.cuda's
    generator functions are stood in for."""
    from safetensors.torch import load_file, save_file

    model = GaussianEmbedder.load(good, device="cpu")
    opt = torch.optim.AdamW(model.head.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ck = tmp_path / "ck"
    ckpt.save_checkpoint(ck, model=model, optimizer=opt, scheduler=sched, predictor=None,
                         state={"epoch": 1, "step": 0, "best": 1.0, "best_epoch": 1, "history": {"step_loss": [], "train_loss": [], "val_loss": []}})
    rng = load_file(str(ck / "rng.safetensors"))
    states = {f"cuda{i}": torch.full((4,), i, dtype=torch.uint8) for i in (0, 2, 10)}
    save_file({**rng, **states}, str(ck / "rng.safetensors"))
    restored: dict[int, list[int]] = {}

    def set_rng_state(state: torch.Tensor, device: int | str = "cuda") -> None:
        index = device if isinstance(device, int) else 0
        if index >= 3:
            raise IndexError("tuple index out of range")  # torch's default_generators[index]
        restored[index] = state.tolist()

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_rng_state)  # what set_rng_state_all calls
    # only the run's own GPU is restored: the others are the caller's, which a CPU run restored
    # from the checkpoint too (review 2026-12-05)
    for device, want in (("cuda:2", {2: [2] * 4}), ("cuda:0", {0: [0] * 4}), ("cuda:1", {}), ("cpu", {}),
                         (None, {})):
        restored.clear()
        ckpt.load_checkpoint_state(ck, optimizer=opt, scheduler=sched, predictor=None,
                                   device=None if device is None else torch.device(device))
        assert restored == want, device  # cuda:1: the checkpoint has no state for it (seeded state kept)
    # a run that drew from cuda:2, resumed on cuda:0: its own state, not cuda:0's (another GPU's)
    state = json.loads((ck / "trainer_state.json").read_text())
    (ck / "trainer_state.json").write_text(json.dumps({**state, "rng_device": "cuda:2"}))
    restored.clear()
    ckpt.load_checkpoint_state(ck, optimizer=opt, scheduler=sched, predictor=None, device=torch.device("cuda:0"))
    assert restored == {0: [2] * 4}
    # "cuda" without an index (written before the index was recorded): the current GPU, as the run used
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    (ck / "trainer_state.json").write_text(json.dumps({**state, "rng_device": "cuda"}))
    restored.clear()
    ckpt.load_checkpoint_state(ck, optimizer=opt, scheduler=sched, predictor=None, device=torch.device("cuda"))
    assert restored == {2: [2] * 4}
    from rag_relax_plugins.training.gaussian_train import _rng_device

    assert _rng_device(torch.device("cuda")) == "cuda:2" and _rng_device(torch.device("cpu")) == "cpu"
    (ck / "trainer_state.json").write_text(json.dumps({**state, "rng_device": "cuda:x"}))
    with pytest.raises(ValueError, match=r"rng_device 'cuda:x' is not a device"):
        ckpt.load_checkpoint_state(ck, optimizer=opt, scheduler=sched, predictor=None, device=torch.device("cuda:0"))
    (ck / "trainer_state.json").write_text(json.dumps(state))
    save_file({**rng, "cudaX": states["cuda0"]}, str(ck / "rng.safetensors"))
    for device in ("cuda:0", "cpu"):
        with pytest.raises(ValueError, match=r"rng.safetensors: unknown generator state 'cudaX'"):
            ckpt.load_checkpoint_state(ck, optimizer=opt, scheduler=sched, predictor=None, device=torch.device(device))


@pytest.mark.parametrize(("key", "value", "match"), [
    ("backbone_fine_tuned", "false", r"'backbone_fine_tuned' must be true or false, got 'false'"),
    ("backbone_subfolder", "/elsewhere/model", r"'backbone_subfolder' must name a folder inside the save"),
    ("backbone_subfolder", "../other", r"'backbone_subfolder' must name a folder inside the save"),
])
def test_provenance_keys_are_checked(good, key, value, match) -> None:
    """bool("false") read as True, and an absolute or '..' backbone_subfolder loaded a backbone
    from outside the save (review)."""
    cfg = json.loads((good / "config.json").read_text(encoding="utf-8"))
    (good / "config.json").write_text(json.dumps({**cfg, key: value}), encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        GaussianEmbedder.load(good, device="cpu")


def test_a_backbone_passed_in_is_saved_with_the_model(tmp_path) -> None:
    """A MiniLM passed in with backbone= and changed elsewhere was saved without backbone/ (taken
    for the untouched package): the reload encoded with the package's weights, silently (review)."""
    from rag_relax_plugins.embedders._gaussian_backbone import load_sentence_transformer

    st = load_sentence_transformer(None)
    with torch.no_grad():
        for p in st.parameters():
            p.mul_(0.9)
    model = GaussianEmbedder(GaussianConfig(freeze="all", dropout=0.0), device="cpu", backbone=st)
    assert model.backbone_fine_tuned
    folder = model.save(tmp_path / "m")
    assert (folder / "backbone").is_dir()
    again = GaussianEmbedder.load(folder, device="cpu")
    assert torch.allclose(again.encode(["hello world"]), model.encode(["hello world"]), atol=1e-6)
    assert again.base_backbone is None and again.backbone_fine_tuned  # evaluate --baseline: the MiniLM package
