"""Atomic writes (rag_relax_plugins._io): a crash at any point leaves a complete save readable, and
a save never deletes a folder that is not a save (the user's files survive)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rag_relax_plugins._io import (
    SAVE_MARKER,
    atomic_folder,
    atomic_write_json,
    atomic_write_text,
    find_saved_folder,
)


def _write(text: str):  # type: ignore[no-untyped-def]
    def fill(tmp: Path) -> None:
        (tmp / "data.txt").write_text(text, encoding="utf-8")
        (tmp / "config.json").write_text("{}", encoding="utf-8")

    return fill


def test_folder_created_then_replaced_without_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "model"
    atomic_folder(target, _write("v1"))
    atomic_folder(target, _write("v2"))
    assert (target / "data.txt").read_text(encoding="utf-8") == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_crash_during_write_keeps_the_previous_folder(tmp_path: Path) -> None:
    target = tmp_path / "model"
    atomic_folder(target, _write("v1"))

    def crash(tmp: Path) -> None:
        (tmp / "data.txt").write_text("half", encoding="utf-8")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_folder(target, crash)
    assert (target / "data.txt").read_text(encoding="utf-8") == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def _crash_between_the_renames(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Save v1 to ``target``, then die while saving v2, after the old folder was moved aside (a
    dead process renames nothing more: the save's attempt to put v1 back fails too)."""
    atomic_folder(target, _write("v1"))
    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):  # type: ignore[no-untyped-def]
        calls.append((src, dst))
        if len(calls) >= 2:  # the new folder would move into place now
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        atomic_folder(target, _write("v2"))
    monkeypatch.setattr(os, "replace", real_replace)


def test_crash_between_the_two_renames_is_recovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model"
    _crash_between_the_renames(target, monkeypatch)
    assert not target.exists()
    recovered = find_saved_folder(target)
    assert (recovered / "data.txt").read_text(encoding="utf-8") == "v1"


def test_find_saved_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        find_saved_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        find_saved_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"^checkpoint not found: .*empty \(expected state\.json inside\)$"):
        find_saved_folder(tmp_path / "empty", "state.json", what="checkpoint")
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="file"):
        atomic_folder(tmp_path / "file", _write("v"))


def test_atomic_text_and_json(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"b": [1, 2]})
    assert json.loads(path.read_text(encoding="utf-8")) == {"b": [1, 2]}
    with pytest.raises(ValueError):
        atomic_write_json(path, {"x": float("nan")})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"x": object()})
    assert json.loads(path.read_text(encoding="utf-8")) == {"b": [1, 2]}  # untouched by the failures
    atomic_write_text(path, "plain")
    assert path.read_text(encoding="utf-8") == "plain"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def _user_folder(root: Path) -> Path:
    folder = root / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.txt").write_text("irreplaceable", encoding="utf-8")
    (folder / "sub" / "table.csv").write_text("1,2", encoding="utf-8")
    return folder


def test_every_save_holds_a_json_marker(tmp_path: Path) -> None:
    target = atomic_folder(tmp_path / "m", _write("v1"))
    marker = json.loads((target / SAVE_MARKER).read_text(encoding="utf-8"))
    assert marker["format"] == "rag-relax-plugins-save" and marker["format_version"] == 1
    assert sorted(p.name for p in target.iterdir()) == sorted([SAVE_MARKER, "config.json", "data.txt"])


def test_folder_with_unrelated_files_is_refused_and_left_intact(tmp_path: Path) -> None:
    folder = _user_folder(tmp_path)
    with pytest.raises(ValueError, match=r"refusing to replace .*data.*nothing was changed"):
        atomic_folder(folder, _write("v1"))
    assert (folder / "thesis.txt").read_text(encoding="utf-8") == "irreplaceable"
    assert (folder / "sub" / "table.csv").read_text(encoding="utf-8") == "1,2"
    assert sorted(p.name for p in folder.iterdir()) == ["sub", "thesis.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # the temp folder is removed


def _folder(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text, encoding="utf-8")
    return path


def test_a_file_the_save_writes_does_not_make_a_user_folder_replaceable(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "proj", {"config.json": '{"mine": 1}', "notes.md": "keep"})
    with pytest.raises(ValueError, match="refusing"):
        atomic_folder(folder, _write("v1"))
    assert (folder / "notes.md").is_file() and (folder / "config.json").read_text() == '{"mine": 1}'
    # a user file inside a subfolder the save also writes is protected too
    (folder / "notes.md").unlink()
    (folder / "sub").mkdir()
    (folder / "sub" / "mine.txt").write_text("keep", encoding="utf-8")

    def with_sub(tmp: Path) -> None:
        _write("v1")(tmp)
        (tmp / "sub").mkdir()
    with pytest.raises(ValueError, match="refusing"):
        atomic_folder(folder, with_sub)
    assert (folder / "sub" / "mine.txt").is_file()


def test_saves_replace_saves(tmp_path: Path) -> None:
    target = tmp_path / "m"
    atomic_folder(target, _write("v1"))
    atomic_folder(target, _write("v2"))  # holds the marker
    assert (target / "data.txt").read_text(encoding="utf-8") == "v2"
    (tmp_path / "empty").mkdir()
    atomic_folder(tmp_path / "empty", _write("v3"))  # an empty folder
    assert (tmp_path / "empty" / "data.txt").read_text(encoding="utf-8") == "v3"


def test_saves_made_before_the_marker_can_be_overwritten(tmp_path: Path) -> None:
    legacy = _folder(tmp_path / "legacy", {"config.json": "{}", "data.txt": "old"})
    atomic_folder(legacy, _write("new"))  # same layout: every old file is rewritten
    assert (legacy / "data.txt").read_text(encoding="utf-8") == "new"
    # an older layout with a file the new save no longer writes: only via the caller's names
    older = _folder(tmp_path / "older", {"weights.bin": "old", "config.json": "{}"})
    with pytest.raises(ValueError, match="refusing"):
        atomic_folder(older, _write("new"))
    atomic_folder(older, _write("new"), replace_if_contains=("weights.bin",))
    assert sorted(p.name for p in older.iterdir()) == sorted([SAVE_MARKER, "config.json", "data.txt"])
    with pytest.raises(ValueError, match="replace_if_contains"):
        atomic_folder(older, _write("x"), replace_if_contains=("../x",))


def test_the_next_save_deletes_the_backup_a_crash_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model"
    _crash_between_the_renames(target, monkeypatch)
    (backup,) = [p for p in tmp_path.iterdir() if p.name.startswith(".model.old-")]
    # names that only look alike are not backups of "model": never deleted
    lookalikes = [tmp_path / ".model.old-abcdefgh.keep", tmp_path / "model.old-abcdefgh", tmp_path / ".model.older"]
    for p in lookalikes:
        p.mkdir()
    atomic_folder(target, _write("v3"))  # the target is missing: the save recreates it
    assert (target / "data.txt").read_text(encoding="utf-8") == "v3"
    assert not backup.exists()
    (unfinished,) = [p.name for p in tmp_path.iterdir() if p.name.startswith(".model.tmp-")]  # never touched
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", unfinished, *(p.name for p in lookalikes)])
    assert find_saved_folder(target) == target


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names fsync'd descriptors through /proc (Linux)")
def test_files_reach_the_disk_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model"
    atomic_folder(target, _write("v1"))
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):  # type: ignore[no-untyped-def]
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_folder(target, _write("v2"))
    first_replace = next(i for i, e in enumerate(events) if e[0] == "replace")
    synced_before = {Path(p).name for kind, p in events[:first_replace] if kind == "fsync"}
    assert {"data.txt", "config.json", SAVE_MARKER} <= synced_before
    assert any(Path(p).name.startswith(".model.tmp-") for kind, p in events[:first_replace] if kind == "fsync")
    assert events[-1] == ("fsync", str(tmp_path))  # the parent's new entries, after the renames


# --- reading saved files back: corrupt files are ValueErrors naming the file -------------------


def test_read_json_and_read_tensors_name_the_corrupt_file(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from rag_relax_plugins._io import read_json, read_tensors

    good_json, bad_json, list_json = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    good_json.write_text('{"x": 1}', encoding="utf-8")
    bad_json.write_text('{"x": ', encoding="utf-8")
    list_json.write_text("[1, 2]", encoding="utf-8")
    assert read_json(good_json) == {"x": 1}
    assert read_json(list_json, object_only=False) == [1, 2]
    with pytest.raises(ValueError, match=r"b\.json: not a readable JSON file"):
        read_json(bad_json)
    with pytest.raises(ValueError, match=r"c\.json: expected a JSON object, got list"):
        read_json(list_json)
    (tmp_path / "d.json").write_bytes(b'{"x": "\xff"}')
    with pytest.raises(ValueError, match=r"d\.json: not a readable JSON file"):
        read_json(tmp_path / "d.json")
    # nested too deep for the decoder, an int past Python's digit limit: a RecursionError and an
    # unnamed ValueError escaped (corrupt-file review)
    (tmp_path / "e.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    (tmp_path / "f.json").write_text('{"n": ' + "9" * 5000 + "}", encoding="utf-8")
    for name in ("e.json", "f.json"):
        with pytest.raises(ValueError, match=rf"{name}: not a readable JSON file"):
            read_json(tmp_path / name, object_only=False)

    t = tmp_path / "t.safetensors"
    save_file({"w": torch.arange(3.0)}, str(t))
    assert torch.equal(read_tensors(t)["w"], torch.arange(3.0))
    t.write_bytes(t.read_bytes()[:20])
    with pytest.raises(ValueError, match=r"t\.safetensors: not a readable safetensors file"):
        read_tensors(t)
    with pytest.raises(FileNotFoundError, match=r"missing\.safetensors"):
        read_tensors(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_read_tensors_refuses_non_finite_floats_naming_file_and_tensor(tmp_path: Path, bad: float) -> None:
    """A NaN weight loaded silently (the Gaussian embedder then returned NaN embeddings; MaxSim
    and the Gumbel scorer failed at the first score, naming no file)."""
    import torch
    from safetensors.torch import save_file

    from rag_relax_plugins._io import read_tensors
    from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
    from rag_relax_plugins.embedders.gaussian_config import GaussianConfig

    t = tmp_path / "t.safetensors"
    save_file({"ids": torch.arange(3), "w": torch.tensor([1.0, bad], dtype=torch.float16)}, str(t))
    with pytest.raises(ValueError, match=r"t\.safetensors: w contains NaN or inf values"):
        read_tensors(t)
    model = GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=8, dropout=0.0), device="cpu")
    model.save(tmp_path / "g")
    [head] = [f for f in (tmp_path / "g").glob("*.safetensors")]
    weights = read_tensors(head)
    name = next(iter(weights))
    weights[name] = torch.full_like(weights[name], bad)
    save_file(weights, str(head))
    with pytest.raises(ValueError, match=rf"{head.name}: {name} contains NaN or inf"):
        GaussianEmbedder.load(tmp_path / "g")


def test_checkpoint_readers_of_every_trainer_name_a_corrupt_file(tmp_path: Path) -> None:
    """The optimiser state (shared by the four trainers, MaxSim's included) and the MoL weights:
    a truncated safetensors file was a raw SafetensorError, which the CLI does not report."""
    import torch

    from rag_relax_plugins.training import maxsim_checkpoint, mol_checkpoint
    from rag_relax_plugins.training._optimizer_state import (
        load_optimizer_state,
        save_optimizer_state,
    )

    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(lin.parameters())
    lin(torch.ones(1, 3)).sum().backward()
    opt.step()
    save_optimizer_state(opt, tmp_path)
    fresh = torch.optim.AdamW(lin.parameters())
    maxsim_checkpoint.load_optimizer(fresh, tmp_path)  # MaxSim reads the shared format
    assert torch.equal(fresh.state[lin.weight]["exp_avg"], opt.state[lin.weight]["exp_avg"])
    good = (tmp_path / "optimizer.safetensors").read_bytes()
    (tmp_path / "optimizer.safetensors").write_bytes(good[:30])
    for load in (load_optimizer_state, maxsim_checkpoint.load_optimizer):
        with pytest.raises(ValueError, match=r"optimizer\.safetensors: not a readable safetensors file"):
            load(torch.optim.AdamW(lin.parameters()), tmp_path)
    (tmp_path / "optimizer.safetensors").write_bytes(good)
    (tmp_path / "optimizer.json").write_text('{"state": {}}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"optimizer\.json: not an optimiser state"):
        load_optimizer_state(torch.optim.AdamW(lin.parameters()), tmp_path)

    (tmp_path / "m").mkdir()
    mol_checkpoint.save_model_weights(lin, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00" * 12)
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
        mol_checkpoint.load_model_weights(lin, tmp_path / "m")


def test_a_save_never_replaces_a_save_of_another_kind(tmp_path: Path) -> None:
    """Any folder holding the marker was replaceable: index.save() onto a LangChain store's folder
    (or a trained model's) silently turned it into an index folder."""
    target = tmp_path / "store"
    atomic_folder(target, _write("store"), kind="mol-langchain-store")
    calls: list[Path] = []
    with pytest.raises(ValueError, match="holds a saved mol-langchain-store, not a mol-index"):
        atomic_folder(target, calls.append, kind="mol-index")
    assert calls == []  # refused before the (possibly large) write
    assert (target / "data.txt").read_text(encoding="utf-8") == "store"
    atomic_folder(target, _write("store 2"), kind="mol-langchain-store")  # the same kind: replaced
    assert json.loads((target / SAVE_MARKER).read_text())["kind"] == "mol-langchain-store"
    old = tmp_path / "old"
    atomic_folder(old, _write("no kind"))  # a save without a kind (older saves): no kind check
    atomic_folder(old, _write("index"), kind="mol-index")
    assert (old / "data.txt").read_text(encoding="utf-8") == "index"


def test_the_store_and_the_index_refuse_each_others_folders(tmp_path: Path) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from rag_relax_plugins.core.mol import MoLSimilarity
    from rag_relax_plugins.index.mol_index import MoLIndex
    from rag_relax_plugins.langchain import MoLVectorStore

    emb = DeterministicFakeEmbedding(size=16)
    MoLVectorStore.from_texts(["a cat", "a dog"], emb, ids=["a", "b"]).save_local(tmp_path / "s")
    with pytest.raises(ValueError, match="not a mol-index"):
        MoLIndex(MoLSimilarity.cosine(16), device="cpu").save(tmp_path / "s")
    assert [d.id for d in MoLVectorStore.load_local(tmp_path / "s", emb).get_by_ids(["a", "b"])] == ["a", "b"]


def test_saved_files_and_folders_follow_the_umask(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """tempfile's 0600 / 0700 stayed on every atomic save: other users and services could not read
    the data, models or reports, whatever the umask. Now a new save gets the mode open() / mkdir()
    would (under the umask of the moment), and a rewrite keeps the mode the file or folder has."""
    import os
    import stat

    from rag_relax_plugins._io import atomic_folder, atomic_write_text

    if os.name != "posix":
        pytest.skip("POSIX modes")

    def mode(p):  # type: ignore[no-untyped-def]
        return stat.S_IMODE(p.stat().st_mode)

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.json", "{}")
        atomic_folder(tmp_path / "model", lambda tmp: (tmp / "w.bin").write_bytes(b"x"))
        assert (mode(tmp_path / "report.json"), mode(tmp_path / "model"), mode(tmp_path / "model" / "w.bin")) == (
            0o644, 0o755, 0o644)
        os.umask(0o077)  # tightened between saves: the next new save follows it
        atomic_write_text(tmp_path / "secret.json", "{}")
        atomic_folder(tmp_path / "private", lambda tmp: (tmp / "w.bin").write_bytes(b"x"))
        assert (mode(tmp_path / "secret.json"), mode(tmp_path / "private")) == (0o600, 0o700)
        os.umask(0o022)
        os.chmod(tmp_path / "report.json", 0o600)  # restricted by the user: a rewrite keeps it so
        os.chmod(tmp_path / "model", 0o700)
        atomic_write_text(tmp_path / "report.json", "[]")
        atomic_folder(tmp_path / "model", lambda tmp: (tmp / "w.bin").write_bytes(b"y"))
        assert (mode(tmp_path / "report.json"), mode(tmp_path / "model")) == (0o600, 0o700)
    finally:
        os.umask(old)


def test_find_saved_folder_refuses_a_save_of_another_kind(tmp_path: Path) -> None:
    """A reader naming its ``kind`` is told what the folder holds instead (and, for a folder that
    holds a save of its kind inside, where that is); saves without a kind are read as before."""
    outer, inner = tmp_path / "ckpt", tmp_path / "ckpt" / "model"
    atomic_folder(inner, _write("weights"), kind="model-a")
    (outer / "state.json").write_text("{}", encoding="utf-8")
    marker = {"format": "rag-relax-plugins-save", "kind": "checkpoint"}
    (outer / SAVE_MARKER).write_text(json.dumps(marker), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'ckpt'} holds a saved checkpoint, not a model-a; load {inner}$"):
        find_saved_folder(outer, "state.json", kind="model-a")
    with pytest.raises(ValueError, match=r"holds a saved model-a, not a model-b$"):
        find_saved_folder(inner, "data.txt", kind="model-b")
    assert find_saved_folder(inner, "data.txt", kind="model-a") == inner
    assert find_saved_folder(outer, "state.json") == outer  # no kind asked: not checked
    (inner / SAVE_MARKER).unlink()  # a save from before the markers
    assert find_saved_folder(inner, "data.txt", kind="model-b") == inner


def test_a_save_through_a_symlink_replaces_its_target_and_keeps_the_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link itself was renamed aside and replaced by a real folder: the folder it named kept the
    old save, and the renamed link (a ``.latest.old-*`` symlink) was never deleted."""
    real, link = tmp_path / "run_1", tmp_path / "latest"
    atomic_folder(real, _write("v1"))
    link.symlink_to(real, target_is_directory=True)
    atomic_folder(link, _write("v2"))
    atomic_folder(link, _write("v3"))
    assert link.is_symlink() and (real / "data.txt").read_text(encoding="utf-8") == "v3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "run_1"]
    _crash_between_the_renames(link, monkeypatch)  # the link dangles; its target's backup is found
    assert not real.exists() and (find_saved_folder(link) / "data.txt").read_text(encoding="utf-8") == "v1"


def test_a_symlink_loop_is_not_found_not_a_runtime_error(tmp_path: Path) -> None:
    """``Path.resolve`` raised RuntimeError("Symlink loop") out of every loader (the CLI printed
    a traceback)."""
    from rag_relax_plugins._io import find_saved_folder
    from rag_relax_plugins.embedders.gaussian import GaussianEmbedder

    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(FileNotFoundError, match="symbolic link that leads nowhere"):
        find_saved_folder(a, "config.json")
    with pytest.raises(FileNotFoundError, match="no Gaussian embedder at"):
        GaussianEmbedder.load(a)


def test_a_saved_config_missing_a_key_every_save_writes_is_refused(tmp_path: Path) -> None:
    """A Gaussian save without 'geometry' loaded as Euclidean, a MoL index or head without 'tau'
    with 0.05: a damaged file changed the results silently."""
    import json

    import torch

    from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
    from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
    from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
    from rag_relax_plugins.index import MoLIndex
    from rag_relax_plugins.training.mol_recipes import (
        RecipeConfig,
        build_hotpot_model,
        load_similarity,
        save_recipe_model,
    )

    def drop(file: Path, key: str, inner: str | None = None) -> None:
        data = json.loads(file.read_text(encoding="utf-8"))
        del (data[inner] if inner else data)[key]
        file.write_text(json.dumps(data), encoding="utf-8")

    GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=8, dropout=0.0, geometry="inner_product"),
                     device="cpu").save(tmp_path / "g")
    drop(tmp_path / "g" / "config.json", "geometry")
    with pytest.raises(ValueError, match=r"config\.json: no 'geometry'"):
        GaussianEmbedder.load(tmp_path / "g")
    index = MoLIndex(MoLSimilarity(MoLConfig(query_dim=8, item_dim=8, tau=0.2)))
    index.add(["a", "b"], torch.randn(2, 8))
    index.save(tmp_path / "i")
    drop(tmp_path / "i" / "config.json", "tau", inner="similarity")
    with pytest.raises(ValueError, match=r"config\.json \(similarity\): no 'tau'"):
        MoLIndex.load(tmp_path / "i")
    feats = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    recipe = RecipeConfig(num_query_embeddings=2, num_item_embeddings=2)
    save_recipe_model(build_hotpot_model(feats[:2], feats, recipe), tmp_path / "h", dataset="hotpotqa", recipe=recipe)
    drop(tmp_path / "h" / "similarity_config.json", "tau")
    with pytest.raises(ValueError, match=r"similarity_config\.json: no 'tau'"):
        load_similarity(tmp_path / "h")


@pytest.mark.parametrize("spelling", [".", "cwd", "parent", "sub/.."])
def test_the_working_directory_and_folders_above_it_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    """``save(".")`` made its temporary folder inside the target and blamed it ("not empty");
    ``save(os.getcwd())`` renamed the process's working directory away (a later relative load
    failed). Both now raise before anything is written."""
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    monkeypatch.chdir(work)
    target = {".": ".", "cwd": os.getcwd(), "parent": str(tmp_path), "sub/..": "sub/.."}[spelling]
    with pytest.raises(ValueError, match="current working directory"):
        atomic_folder(target, _write("v1"))
    assert sorted(p.name for p in work.iterdir()) == ["sub"] and Path.cwd() == work.resolve()
    assert atomic_folder("sub", _write("v1")) == work / "sub"  # a relative subfolder is fine
    assert (work / "sub" / "data.txt").read_text(encoding="utf-8") == "v1"


def test_check_save_target_refuses_the_working_directory_as_the_save_will(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run checks its target before training: "." passed there (an empty folder, or one with a
    config.json) and the save refused it at the end, after the whole run (review)."""
    from rag_relax_plugins._io import check_save_target

    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for target in (".", os.getcwd()):
        with pytest.raises(ValueError, match="current working directory"):
            check_save_target(target, kind="mol-model")
    check_save_target("sub", kind="mol-model")  # a subfolder is fine


def test_a_target_through_a_symlink_then_dotdot_is_the_folder_the_os_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``os.path.abspath`` collapsed ``link/..`` as text: the save went beside the link, and a
    load of the same path (which the OS resolves through the link) found nothing (review)."""
    (tmp_path / "other" / "dir").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "link").symlink_to(tmp_path / "other" / "dir")
    monkeypatch.chdir(tmp_path / "work")
    written = atomic_folder("link/../x", _write("v1"))
    assert written.resolve() == (tmp_path / "other" / "x").resolve()
    assert Path("link/../x/data.txt").read_text(encoding="utf-8") == "v1"
    assert not (tmp_path / "work" / "x").exists()


def test_an_absolute_target_saves_from_a_deleted_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    atomic_folder(tmp_path / "x", _write("v1"))
    assert (tmp_path / "x" / "data.txt").read_text(encoding="utf-8") == "v1"


@pytest.mark.parametrize("target", ["a/../lnk", "a/../b", "d/missing/../x", "f/../x"])
def test_dotdot_after_a_missing_folder_or_a_file_is_refused_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """The OS cannot read ``a/../b`` without ``a``: a save there went to ``b`` (a loader given the
    same string found nothing), or, through a link ``lnk``, renamed the link away (review)."""
    from rag_relax_plugins._io import check_save_target

    (tmp_path / "real").mkdir()
    (tmp_path / "lnk").symlink_to(tmp_path / "real")
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("a file", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    for save in (lambda t: atomic_folder(t, _write("v1")), lambda t: check_save_target(t, kind="mol-model")):
        with pytest.raises(ValueError, match=r"is not an existing folder, and the path goes up from it"):
            save(target)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("target", ["x/sub/..", "x/sub/../../x", "x/sub/../sub2", "x/up/x"])
def test_a_path_through_the_folder_it_replaces_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """``x/sub/..`` is ``x``: replacing ``x`` removes ``sub``, and a loader given the same string
    (or the recovery of a crash between the two renames) found nothing (review)."""
    from rag_relax_plugins._io import check_save_target

    (tmp_path / "x" / "sub").mkdir(parents=True)
    (tmp_path / "x" / "up").symlink_to("..")  # x/up/x is x, through a link that goes up
    monkeypatch.chdir(tmp_path)
    if target == "x/sub/../sub2":  # inside x, not through the folder it replaces: fine
        atomic_folder(target, _write("v1"))
        assert (find_saved_folder(target) / "data.txt").read_text(encoding="utf-8") == "v1"
        return
    for save in (lambda t: atomic_folder(t, _write("v1")), lambda t: check_save_target(t, kind="mol-model")):
        with pytest.raises(ValueError, match="goes through the folder the save replaces"):
            save(target)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["sub", "up"]


@pytest.mark.parametrize("blocker", ["file", "loop", "link to a file's child", "dangling"])
def test_a_file_or_a_link_loop_on_the_way_is_refused_before_anything_is_written(tmp_path: Path, blocker: str) -> None:
    """``f/x`` with ``f`` a file passed the early check (the run then failed at its final save);
    a loop on the way did too on Python 3.13 (review)."""
    from rag_relax_plugins._io import check_save_target

    way = tmp_path / "way"
    if blocker == "file":
        way.write_text("not a folder", encoding="utf-8")
    elif blocker == "loop":
        way.symlink_to(way)
    elif blocker == "dangling":
        way.symlink_to(tmp_path / "missing")
    else:  # way/x is a link to f/x, f a file: the folder the link points into cannot exist
        way.mkdir()
        (tmp_path / "f").write_text("a file", encoding="utf-8")
        (way / "x").symlink_to(tmp_path / "f" / "x")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    for save in (lambda t: atomic_folder(t, _write("v1")), lambda t: check_save_target(t, kind="mol-model")):
        with pytest.raises(ValueError, match="is not a folder"):
            save(way / "x")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("shape", ["dangling", "missing/../real", "f/../real"])
@pytest.mark.parametrize("at_last_part", [False, True])
def test_a_link_the_os_cannot_follow_is_refused_on_the_way_and_at_the_last_part(
    tmp_path: Path, shape: str, at_last_part: bool
) -> None:
    """A link to ``missing/../real`` (or ``f/../real``, ``f`` a file): the save went to ``real``
    while the OS, and so a loader given the same string, cannot follow the link (review); a
    dangling link on the way is refused too. A dangling link as the save folder itself is fine:
    the save creates the folder it points to."""
    from rag_relax_plugins._io import check_save_target

    (tmp_path / "real").mkdir()
    (tmp_path / "f").write_text("a file", encoding="utf-8")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone" if shape == "dangling" else Path(shape))
    target = link if at_last_part else link / "x"
    if shape == "dangling" and at_last_part:
        atomic_folder(target, _write("v1"))
        assert (find_saved_folder(target) / "data.txt").read_text(encoding="utf-8") == "v1" and link.is_symlink()
        return
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    for save in (lambda t: atomic_folder(t, _write("v1")), lambda t: check_save_target(t, kind="mol-model")):
        with pytest.raises(ValueError, match=r"is not a folder|is not an existing folder"):
            save(target)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_a_chain_of_links_at_the_last_part_is_saved_through(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "one").symlink_to("two")
    (tmp_path / "two").symlink_to("real")
    atomic_folder(tmp_path / "one", _write("v1"))
    atomic_folder(tmp_path / "one", _write("v2"))
    assert (tmp_path / "real" / "data.txt").read_text(encoding="utf-8") == "v2"
    assert (tmp_path / "one").is_symlink() and (tmp_path / "two").is_symlink()
    assert (find_saved_folder(tmp_path / "one") / "data.txt").read_text(encoding="utf-8") == "v2"


def test_a_symlink_loop_target_is_a_value_error(tmp_path: Path) -> None:
    from rag_relax_plugins._io import check_save_target

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for save in (lambda t: atomic_folder(t, _write("v1")), lambda t: check_save_target(t, kind="mol-model")):
        with pytest.raises(ValueError, match="cannot save into"):
            save(tmp_path / "loop")


def test_a_relative_target_from_a_deleted_working_directory_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(FileNotFoundError, match="cannot save into x: a relative path, and the working directory"):
        atomic_folder("x", _write("v1"))


def test_an_atomic_file_write_through_link_dotdot_lands_where_the_os_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary file was made in the parent as written, with ".." collapsed as text (from
    Python 3.12, tempfile does that): not beside the target, so the rename failed (review)."""
    (tmp_path / "other" / "dir").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "lnk").symlink_to(tmp_path / "other" / "dir")
    monkeypatch.chdir(tmp_path / "work")
    atomic_write_text("lnk/../x.json", "{}")
    assert (tmp_path / "other" / "x.json").read_text(encoding="utf-8") == "{}"
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["dir", "x.json"]


def test_check_save_target_passes_only_targets_the_final_save_accepts(tmp_path: Path) -> None:
    """The early check let through a folder of the user's holding a config.json (or a
    *.safetensors) beside other files; the save refused it at the end, after the whole run
    (review). Now what the check passes the save accepts, and a marker-less folder is refused."""
    from rag_relax_plugins._io import check_save_target

    mine = _folder(tmp_path / "mine", {"config.json": '{"mine": 1}', "notes.md": "keep"})
    weights = _folder(tmp_path / "weights", {"model.safetensors": "x", "README.md": "keep"})
    for folder in (mine, weights):
        with pytest.raises(ValueError, match="not a rag-relax-plugins save, or one made before saves were marked"):
            check_save_target(folder, kind="mol-model")
        with pytest.raises(ValueError, match="not a rag-relax-plugins save, or one made before saves were marked"):
            atomic_folder(folder, _write("v1"), kind="mol-model")
    assert (mine / "notes.md").read_text() == "keep" and (mine / "config.json").read_text() == '{"mine": 1}'

    empty = tmp_path / "empty"
    empty.mkdir()
    legacy = _folder(tmp_path / "legacy", {"trainer_state.json": "{}", "other.bin": "x"})
    saved = tmp_path / "saved"
    atomic_folder(saved, _write("v0"), kind="mol-model")
    for folder, names in ((empty, ()), (legacy, ("trainer_state.json",)), (saved, ()),
                          (tmp_path / "new", ())):
        check_save_target(folder, kind="mol-model", replace_if_contains=names)
        atomic_folder(folder, _write("v1"), replace_if_contains=names, kind="mol-model")
        assert (folder / "data.txt").read_text(encoding="utf-8") == "v1"


def test_files_a_library_writes_0600_in_a_save_follow_the_umask(tmp_path: Path) -> None:
    """safetensors writes its files 0600: a saved model's weights (and a reader cache shared
    through $RAG_RELAX_CACHE) were unreadable to other users beside 0644 JSON files (review)."""
    import os
    import stat

    if os.name != "posix":
        pytest.skip("POSIX modes")
    import torch
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))
        (tmp / "sub").mkdir()
        save_file({"w": torch.zeros(2)}, str(tmp / "sub" / "head.safetensors"))

    old = os.umask(0o022)
    try:
        folder = atomic_folder(tmp_path / "m", write)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*.safetensors")}
    assert modes == {"model.safetensors": 0o644, "head.safetensors": 0o644}


def test_the_mode_pass_adds_read_bits_only_and_leaves_shared_files_alone(tmp_path: Path) -> None:
    """The first version set every file to 0666 less the umask: it dropped execute bits, made
    read-only files writable, and chmod'ed a hard-linked file outside the save too (review)."""
    import os
    import stat

    if os.name != "posix":
        pytest.skip("POSIX modes")
    outside = tmp_path / "private.bin"
    outside.write_bytes(b"x")
    outside.chmod(0o600)

    def write(tmp: Path) -> None:
        (tmp / "run.sh").write_text("#!/bin/sh\n", encoding="utf-8")
        (tmp / "run.sh").chmod(0o700)
        (tmp / "frozen.txt").write_text("x", encoding="utf-8")
        (tmp / "frozen.txt").chmod(0o400)
        os.link(outside, tmp / "linked.bin")

    old = os.umask(0o022)
    try:
        folder = atomic_folder(tmp_path / "save", write)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.name != SAVE_MARKER}
    assert modes == {"run.sh": 0o744, "frozen.txt": 0o444, "linked.bin": 0o600}
    assert stat.S_IMODE(outside.stat().st_mode) == 0o600


@pytest.mark.parametrize(("failing_call", "after_the_rename"), [(1, False), (2, False), (1, True)])
def test_a_failed_rename_puts_the_previous_save_back_and_leaves_no_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_call: int, after_the_rename: bool
) -> None:
    """A full disk (or an interrupt, also one arriving just after the first rename) left the new
    save as a .tmp-* copy and the target missing until the next save (review)."""
    target = tmp_path / "model"
    atomic_folder(target, _write("v1"))
    real, calls = os.replace, []

    def replace(src: object, dst: object) -> None:
        calls.append(dst)
        if len(calls) == failing_call and not after_the_rename:
            raise OSError(28, "No space left on device")
        real(src, dst)  # type: ignore[arg-type]
        if len(calls) == failing_call:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        atomic_folder(target, _write("v2"))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (target / "data.txt").read_text(encoding="utf-8") == "v1"


def test_a_users_folder_named_like_a_backup_is_kept(tmp_path: Path) -> None:
    """Any '.<name>.old-<word>' sibling was deleted by the next save as a stale backup (review):
    only one that holds the save marker is."""
    target = tmp_path / "index"
    atomic_folder(target, _write("v1"))
    mine = tmp_path / ".index.old-keep"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine", encoding="utf-8")
    atomic_folder(target, _write("v2"))
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".index.old-keep", "index"]


def test_a_mount_point_target_and_a_folder_as_a_file_target_are_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mount point passed check_save_target, then the save's rename aside failed ("Device or
    resource busy"); an existing folder passed check_file_target, and `evaluate --output dir/`
    failed after the whole evaluation (review)."""
    from rag_relax_plugins._io import check_file_target, check_save_target

    target = tmp_path / "mnt"
    atomic_folder(target, _write("v1"))
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == target or real(p))
    with pytest.raises(ValueError, match=r"it is a mount point, which a save cannot rename; nothing was changed"):
        check_save_target(target, kind="x")
    with pytest.raises(ValueError, match=r"it is a mount point"):
        atomic_folder(target, _write("v2"))
    monkeypatch.undo()
    assert (target / "data.txt").read_text(encoding="utf-8") == "v1"
    with pytest.raises(ValueError, match=r"cannot write the file .*: it is a folder"):
        check_file_target(tmp_path)


def test_a_file_written_through_a_symlink_replaces_what_it_points_to(tmp_path: Path) -> None:
    """The link itself was replaced by a plain file and the file it named went stale (review);
    atomic_folder already saved through a link."""
    real, link = tmp_path / "v1.json", tmp_path / "current.json"
    real.write_text("old", encoding="utf-8")
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text(encoding="utf-8") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.json", "v1.json"]
