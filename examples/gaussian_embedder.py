"""Isotropic Gaussian embedder in 30 seconds: prepare data, train a few steps, retrieve.

Runs on the deterministic hashing backbone (no model download, CPU only). For real use drop
``backbone="hashing:256"`` to get the offline MiniLM backbone, and train for a few epochs:

    rag-relax prepare-data docs.txt --output data/
    rag-relax train --train-file data/train.jsonl --val-file data/val.jsonl --output runs/g
    rag-relax evaluate --model runs/g/best_model --eval-file data/eval.json

Run: ``python examples/gaussian_embedder.py``
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.embedders.gaussian_retriever import GaussianRetriever
from rag_relax_plugins.training.gaussian_data import load_eval_file, prepare_data
from rag_relax_plugins.training.gaussian_eval import evaluate_model, format_table
from rag_relax_plugins.training.gaussian_train import TrainConfig, train

DOCS = [
    "Cats are small felines. They purr when content and hunt mice at night.",
    "Dogs are loyal companions. They bark at strangers and love long walks.",
    "The stock market fell sharply. Investors worried about interest rates.",
    "Rain is expected tomorrow. Forecasters warn of flooding in the valley.",
    "Python is a programming language. It is popular for data science work.",
    "The Eiffel Tower is in Paris. Millions of tourists visit it every year.",
    "Bees make honey from nectar. Their colonies are led by a single queen.",
    "Volcanoes erupt molten rock. Lava flows can destroy nearby villages.",
    "Chess is a strategy board game. Grandmasters study openings for years.",
    "Coffee comes from roasted beans. Many people drink it every morning.",
]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "docs.txt").write_text("\n\n".join(DOCS), encoding="utf-8")
        # 6 / 2 / 2 pairs: two validation pairs (one has no in-batch negative to choose best_model by)
        paths = prepare_data(root / "docs.txt", root / "data", fractions=(0.6, 0.2, 0.2), negatives=True)
        cfg = TrainConfig(
            train_file=str(paths["train"]), val_file=str(paths["val"]), output_dir=str(root / "run"),
            backbone="hashing:256", output_dim=64, epochs=3, batch_size=4, head_learning_rate=1e-3,
            lambda_isotropy=0.05, device="cpu", show_progress=False,
        )
        result = train(cfg)
        print(f"trained {result['steps']} steps, final train loss {result['history']['train_loss'][-1]:.3f}")
        model = GaussianEmbedder.load(root / "run" / "best_model", device="cpu")
        result = evaluate_model(model, load_eval_file(paths["eval"]))
        # cut-offs at or past the corpus size find every document: their recall says nothing here
        result["metrics"] = {k: v for k, v in result["metrics"].items()
                             if "@" not in k or int(k.split("@")[1]) < result["num_docs"]}
        print(f"{result['num_queries']} test queries over {result['num_docs']} documents")
        print(format_table(result))
        retriever = GaussianRetriever(model)
        retriever.add_documents(DOCS)
        for text, score in retriever.retrieve("cats that purr and hunt mice", top_k=2):
            print(f"{score:8.3f}  {text}")


if __name__ == "__main__":
    main()
