"""The zoo table for the README, generated from the committed manifests so every figure is the recorded one.

``python -m diffaccel.zoo.report`` prints a Markdown table (name, model class, parameters, file size, training
command, training wall time, final loss, absolute score, sample grid).
"""

from __future__ import annotations

from .weights_io import read_json, weights_dir


def _score(manifest: dict) -> str:
    metrics = manifest.get("metrics", {})
    if "sample_accuracy" in metrics:
        return (
            f"{100 * metrics['sample_accuracy']:.1f}% of samples classified as the requested digit "
            f"(guidance {metrics.get('sample_accuracy_guidance_scale')}; classifier {100 * metrics['classifier_test_accuracy']:.1f}% on held-out real digits)"
        )
    if "photo_accuracy" in metrics:
        return (
            f"{100 * metrics['photo_accuracy']:.1f}% of samples nearest to a crop of the requested photo "
            f"(guidance {metrics.get('photo_accuracy_guidance_scale')}; chance 12.5%)"
        )
    return "-"


def zoo_rows(names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        folder = weights_dir(name)
        if not (folder / "manifest.json").is_file():
            continue
        manifest = read_json(folder / "manifest.json")
        config = read_json(folder / "config.json")
        classes = ", ".join(f"{c['class']}" for c in config["components"].values())
        size_mb = sum((folder / f).stat().st_size for f in manifest["sha256"]) / 2**20
        rows.append(
            {
                "name": name,
                "classes": classes,
                "parameters": sum(manifest["parameters"].values()),
                "size_mb": size_mb,
                "command": manifest["command"],
                "train_min": manifest["train_wall_s"] / 60,
                "steps": manifest["steps"],
                "final_loss": manifest["final_loss"],
                "score": _score(manifest),
                "grid": f"docs/zoo/{name}.png",
            }
        )
    return rows


def zoo_table_markdown(names: list[str] | None = None) -> str:
    from . import entry
    from . import names as all_names

    names = [n for n in (names or all_names()) if entry(n).kind == "image"]
    lines = [
        "| model | diffusers classes | params | files | training command | train time (1 thread) | final loss | absolute score | samples |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in zoo_rows(names):
        lines.append(
            f"| `{row['name']}` | {row['classes']} | {row['parameters'] / 1e6:.2f} M | {row['size_mb']:.1f} MB | "
            f"`{row['command']}` | {row['train_min']:.0f} min ({row['steps']} steps) | {row['final_loss']:.4f} | "
            f"{row['score']} | [{row['grid']}]({row['grid']}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(zoo_table_markdown())
