"""What a push publishes: the model, dataset and Space repos, file by file, and the cards' YAML.

Pushes a dataset folder, a model folder and the Space to the local Hub stand-in (tests/hub_server.py,
the Hub's protocol on this machine; nothing leaves it), then prints each repo's files with their sizes,
each card's metadata, and what the project's loader fetches from the model repo. Last line: the
share of the model repo's bytes a loader downloads.

    .venv/bin/python benchmarks/hub_artifacts.py --data data/synthetic --model runs/default/model
    .venv/bin/python benchmarks/hub_artifacts.py --data runs/unseen/data --model runs/unseen/run/model --license apache-2.0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hub_server import TOKEN, HubServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="Dataset folder (any layout train reads).")
    parser.add_argument("--model", required=True, help="A model folder trained on it.")
    parser.add_argument("--license", help="Licence id for data this project did not generate.")
    args = parser.parse_args()

    hub = HubServer()
    # huggingface_hub reads its endpoint at import: point it at the stand-in first.
    os.environ.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HUB_DISABLE_XET="1", HF_HOME=tempfile.mkdtemp(prefix="hf_home_"))
    hub.start()
    from huggingface_hub import DatasetCard, ModelCard, RepoCard

    from training.publish import push_dataset, push_model, push_space

    name = Path(args.data).name
    repos = {"dataset": f"demo/{name}-images", "model": f"demo/{name}-model", "space": f"demo/{name}-space"}
    push_dataset(args.data, repos["dataset"], license=args.license)
    push_model(args.model, repos["model"], dataset_repo=repos["dataset"], license=args.license)
    push_space(Path(__file__).resolve().parents[1] / "space", repos["space"], repos["model"], dataset_repo=repos["dataset"])
    cards = {"dataset": DatasetCard, "model": ModelCard, "space": RepoCard}
    for kind, repo in repos.items():
        files = hub.files(kind, repo)
        print(f"\n## {kind} repo {repo}: {len(files)} files, {sum(map(len, files.values())) / 1e6:.2f} MB")
        shown = sorted(files)
        if kind == "dataset":
            shown = [n for n in shown if not n.startswith("examples/")] + [f"examples/ ({sum(n.startswith('examples/') for n in files)} images)"]
        for path in shown:
            print(f"  {path}" + (f"  {len(files[path]):,} B" if path in files else ""))
        yaml = cards[kind](files["README.md"].decode()).data.to_yaml()
        print("  card YAML:\n    " + "\n    ".join(yaml.splitlines()[:60]) + ("\n    ..." if len(yaml.splitlines()) > 60 else ""))
    # The loader in a fresh process with an empty Hub cache, so only its own downloads are counted.
    script = "import sys, json; from defect_inference import resolve_model_dir; f = resolve_model_dir(sys.argv[1]); " \
             "print(json.dumps({p.name: p.stat().st_size for p in f.rglob('*') if p.is_file()}))"
    run = subprocess.run([sys.executable, "-c", script, repos["model"]], capture_output=True, text=True, check=True,
                         env={**os.environ, "HF_HOME": tempfile.mkdtemp(prefix="hf_home_")})
    files = json.loads(run.stdout.strip().splitlines()[-1])
    fetched = sum(files.values())
    total = sum(map(len, hub.files("model", repos["model"]).values()))
    print(f"\nthe loader fetches {sorted(files)}: {fetched / 1e6:.2f} of {total / 1e6:.2f} MB")
    print(f"loader download / model repo size: {fetched / total:.2f}")
    hub.stop()


if __name__ == "__main__":
    main()
