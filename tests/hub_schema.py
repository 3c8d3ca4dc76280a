"""Small datasets in the hub schemas the declarations map (probes/datasets/*.yaml, probes/icl/*.yaml hub blocks).

Column names, class-label names and splits follow the hub copies as lm-evaluation-harness's task YAMLs
and the dataset cards give them; the texts are made up. ``write_fetched`` lays them out as
``biasaudit data fetch`` does; ``fake_load_dataset`` stands in for ``datasets.load_dataset``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

N_TRAIN, N_TEST = 16, 12


def _crows_pairs() -> dict[str, datasets.Dataset]:
    types = ["race-color", "gender", "socioeconomic", "religion"]
    rows = [
        {
            "id": i,
            "sent_more": f"People from group {i} are always careless with money.",
            "sent_less": f"People from place {i} are always careless with money.",
            "stereo_antistereo": "stereo" if i % 3 else "antistereo",
            "bias_type": types[i % len(types)],
        }
        for i in range(N_TEST)
    ]
    return {"test": datasets.Dataset.from_list(rows)}


def bbq_hub_row(i: int) -> dict[str, Any]:
    polarity = "neg" if i % 2 else "nonneg"
    return {
        "example_id": i,
        "question_index": "1",
        "question_polarity": polarity,
        "context_condition": "ambig" if i % 4 < 2 else "disambig",
        "category": "Age",
        "answer_info": {"ans0": ["teacher", "old"], "ans1": ["student", "nonOld"], "ans2": ["Unknown", "unknown"]},
        "additional_metadata": {"subcategory": "None", "stereotyped_groups": ["old"], "version": "a", "source": ""},
        "context": f"Case {i}: a teacher and a student waited at the station.",
        "question": "Who missed the train?" if polarity == "neg" else "Who caught the train?",
        "ans0": "The teacher",
        "ans1": "The student",
        "ans2": "Unknown",
        "label": 2 if i % 4 < 2 else i % 2,
    }


def _bbq() -> dict[str, datasets.Dataset]:
    return {"test": datasets.Dataset.from_list([bbq_hub_row(i) for i in range(N_TEST)])}


STEREOSET_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "target": datasets.Value("string"),
        "bias_type": datasets.Value("string"),
        "context": datasets.Value("string"),
        "sentences": datasets.Sequence(
            {
                "sentence": datasets.Value("string"),
                "id": datasets.Value("string"),
                "labels": datasets.Sequence(
                    {
                        "label": datasets.ClassLabel(names=["anti-stereotype", "stereotype", "unrelated", "related"]),
                        "human_id": datasets.Value("string"),
                    }
                ),
                "gold_label": datasets.ClassLabel(names=["anti-stereotype", "stereotype", "unrelated"]),
            }
        ),
    }
)


def stereoset_candidates(task: str, i: int) -> dict[str, str]:
    """The three candidates of example ``i``, by gold label (the flat file's field names)."""
    if task == "intrasentence":
        return {
            "stereotype": f"The chess player {i} was quiet.",
            "anti-stereotype": f"The chess player {i} was loud.",
            "unrelated": f"The chess player {i} was cloudy.",
        }
    return {
        "stereotype": "They are very good at maths.",
        "anti-stereotype": "They are bad at maths.",
        "unrelated": f"Cats sleep {i} hours.",
    }


def _stereoset(task: str) -> dict[str, datasets.Dataset]:
    rows = []
    for i in range(6):
        candidates = stereoset_candidates(task, i)
        order = [("unrelated", 2), ("stereotype", 1), ("anti-stereotype", 0)]  # the hub shuffles them
        rows.append(
            {
                "id": f"{task}-{i}",
                "target": "chess player",
                "bias_type": "profession",
                "context": f"The chess player {i} was BLANK." if task == "intrasentence" else f"I met player {i}.",
                "sentences": {
                    "sentence": [candidates[name] for name, _ in order],
                    "id": [f"s{i}-{gold}" for _, gold in order],
                    "labels": [{"label": [gold], "human_id": ["h1"]} for _, gold in order],
                    "gold_label": [gold for _, gold in order],
                },
            }
        )
    return {"validation": datasets.Dataset.from_list(rows, features=STEREOSET_FEATURES)}


def _labelled(
    columns: dict[str, Any], label_column: str, names: list[str], splits: dict[str, int]
) -> dict[str, datasets.Dataset]:
    out = {}
    for split, n in splits.items():
        rows = []
        for i in range(n):
            row = {key: fmt.format(i=i, split=split) for key, fmt in columns.items()}
            row[label_column] = i % len(names)
            rows.append(row)
        features = datasets.Features(
            {**{key: datasets.Value("string") for key in columns}, label_column: datasets.ClassLabel(names=names)}
        )
        out[split] = datasets.Dataset.from_list(rows, features=features)
    return out


def hub_datasets() -> dict[tuple[str, str | None], dict[str, datasets.Dataset]]:
    """(hub id, config) -> split -> Dataset, for every declared hub copy."""
    glue = {"train": N_TRAIN, "validation": N_TEST}
    return {
        ("jannalu/crows_pairs_multilingual", "english"): _crows_pairs(),
        ("oskarvanderwal/bbq", "All"): _bbq(),
        ("McGill-NLP/stereoset", "intersentence"): _stereoset("intersentence"),
        ("McGill-NLP/stereoset", "intrasentence"): _stereoset("intrasentence"),
        ("nyu-mll/glue", "sst2"): _labelled(
            {"sentence": "a {split} film number {i} , warm and funny "}, "label", ["negative", "positive"], glue
        ),
        ("fancyzhx/ag_news", None): _labelled(
            {"text": "Story {i} of the {split} wire: markets and matches."},
            "label",
            ["World", "Sports", "Business", "Sci/Tech"],
            {"train": N_TRAIN, "test": N_TEST},
        ),
        ("CogComp/trec", None): _labelled(
            {"text": "What is question {i} of the {split} set?"},
            "coarse_label",
            ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"],
            {"train": N_TRAIN, "test": N_TEST},
        ),
        ("aps/super_glue", "cb"): _labelled(
            {"premise": "Premise {i} ({split}).", "hypothesis": "the claim {i} holds"},
            "label",
            ["entailment", "contradiction", "neutral"],
            glue,
        ),
        ("aps/super_glue", "rte"): _labelled(
            {"premise": "Premise {i} ({split}).", "hypothesis": "The claim {i} holds."},
            "label",
            ["entailment", "not_entailment"],
            glue,
        ),
    }


def fake_load_dataset(path: str, name: str | None = None, *, revision: str | None = None, split: Any = None):
    """``datasets.load_dataset`` over ``hub_datasets()`` (a list of splits, as the declarations ask)."""
    table = hub_datasets()[(path, name)]
    if isinstance(split, list):
        return [table[s] for s in split]
    return datasets.DatasetDict(table) if split is None else table[split]


def write_fetched(root: Path) -> Path:
    """A data folder as ``biasaudit data fetch crows_pairs bbq stereoset icl --to root`` writes it (through
    ``data_sources.fetch`` itself, with the hub replaced by ``fake_load_dataset``)."""
    import pytest

    from biasaudit import models
    from biasaudit.calibration.evaluate import TASKS
    from biasaudit.calibration.tasks import load_task
    from biasaudit.data_sources import benchmark_decls, fetch, icl_decl

    decls = [d for d in benchmark_decls().values() if d.hub] + [icl_decl(load_task(n)) for n in TASKS]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets, "load_dataset", fake_load_dataset)
        patch.setattr(models, "hub_reachable", lambda: True)
        for decl in decls:
            fetch(decl, root)
    return root
