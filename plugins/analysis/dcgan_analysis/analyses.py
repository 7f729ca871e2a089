"""The four analyses end to end on a run: load, extract, measure, write the results.

Each function takes plain arguments (what the commands parse), writes its figure and/or
JSON where it is told, and returns the report it wrote. Results go into the run's
``analysis/`` folder by default, numbered so nothing earlier is overwritten.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from dcgan_analysis import __version__
from dcgan_analysis.data import RealImages, class_names, load_all, seeded_subset
from dcgan_analysis.features import (
    DiscriminatorFeatures,
    FeatureCache,
    PixelFeatures,
    cached_features,
    feature_layout,
    random_init_seed,
)
from dcgan_cli.api import (
    DcganError,
    RunPaths,
    atomic_write_json,
    derive_seed,
    next_numbered,
    open_engine,
    progress_task,
    read_run_config,
    resolve_device,
    save_image,
)

TRAINED, RANDOM, PIXELS = "trained discriminator", "random discriminator", "raw pixels"


def analysis_folder(run_dir: Path) -> Path:
    return RunPaths(Path(run_dir)).root / "analysis"


def default_output(run_dir: Path, stem: str, suffixes: tuple[str, ...]) -> Path:
    """analysis/STEM-NNN (no suffix) for the first NNN none of whose files exist."""
    return next_numbered(analysis_folder(run_dir), stem, suffixes)


def _run_seed(run_dir: Path) -> int:
    return int((read_run_config(run_dir).get("train") or {}).get("seed", 0))


def _header(run_dir: Path, real: RealImages | None, **inputs) -> dict:
    header = {
        "analysis": "dcgan-analysis " + __version__,
        "run": str(run_dir),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if real is not None:
        header["dataset"] = real.identity()
    header["inputs"] = inputs
    return header


# ---------------------------------------------------------------------------- classify


def classify_run(
    run_dir: Path,
    real: RealImages,
    out: Path,
    *,
    labels_per_class: int = 10,
    draws: int = 20,
    seed: int = 0,
    test_fraction: float = 0.5,
    val_fraction: float = 0.2,
    max_images: int | None = None,
    layers: tuple[int, ...] | None = None,
    batch_size: int = 256,
    device: str = "auto",
    cache: bool = True,
) -> dict:
    """The paper's classification protocol on the trained discriminator's features and two baselines."""
    from dcgan_analysis.classify import run_protocol

    trained = DiscriminatorFeatures.trained(run_dir, layers=layers)
    config = trained.net.config
    random = DiscriminatorFeatures.random(config, random_init_seed(_run_seed(run_dir)), layers=layers)
    extractors = {TRAINED: trained, RANDOM: random, PIXELS: PixelFeatures()}
    indices = (
        seeded_subset(len(real), max_images, derive_seed(seed, "classify", "subset") % 2**32) if max_images else None
    )
    extracted = cached_features(FeatureCache.for_run(run_dir, cache), real, extractors, indices, batch_size, device)
    if extracted.labels is None:
        raise DcganError(
            f"dataset {real.name!r} has no labels; classify needs a labelled dataset "
            "(digits, mnist, cifar10, or a folder with one subfolder per class)"
        )
    labels = extracted.labels.numpy()
    sets = {name: (extractors[name].describe(), extracted.features[name].numpy()) for name in extractors}
    with progress_task("L2-SVM draws", draws, unit="draw") as advance:
        result = run_protocol(
            sets,
            labels,
            labels_per_class=labels_per_class,
            draws=draws,
            seed=seed,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
            classes=class_names(real.dataset, labels),
            advance=advance,
        )
    report = {
        **_header(
            run_dir,
            real,
            labels_per_class=labels_per_class,
            draws=draws,
            seed=seed,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
            max_images=max_images,
            layers="all" if layers is None else [i + 1 for i in layers],
        ),
        "images": len(labels),
        "unreadable_images": extracted.skipped,
        "features_from_cache": list(extracted.cached),
        "layout": feature_layout(config, layers=layers),
        **result.to_dict(),
        "comparisons": [result.comparison(TRAINED, RANDOM), result.comparison(TRAINED, PIXELS)],
    }
    atomic_write_json(out, report)
    return report


# ---------------------------------------------------------------------------- inspect


def inspect_run(
    run_dir: Path,
    real: RealImages,
    stem: Path,
    *,
    features: int = 6,
    per_feature: int = 8,
    layer: int = -1,
    images: int = 512,
    seed: int = 0,
    device: str = "auto",
) -> dict:
    """Guided backpropagation of the strongest features of one layer, trained vs random D: STEM.png + STEM.json."""
    from dcgan_analysis.figures import inspect_figure
    from dcgan_analysis.guided import strongest_features

    if features < 1 or per_feature < 1 or images < 1:
        raise DcganError("--features, --per-feature and --images must each be at least 1")
    trained = DiscriminatorFeatures.trained(run_dir)
    n_layers = len(trained.net.blocks)
    if not (-n_layers <= layer < 0 or 1 <= layer <= n_layers):
        raise DcganError(f"--layer {layer}: this discriminator has conv layers 1..{n_layers} (or -1 for the last)")
    index = layer - 1 if layer > 0 else layer % n_layers
    random = DiscriminatorFeatures.random(trained.net.config, random_init_seed(_run_seed(run_dir)))
    chosen = seeded_subset(len(real), images, derive_seed(seed, "inspect") % 2**32)
    batch = load_all(real.dataset, chosen, workers=real.options.workers)
    dev = resolve_device(device)
    x = batch.images.to(dev)
    maps = {}
    with progress_task("guided backpropagation", 2, unit="net") as advance:
        for name, extractor in (("trained", trained), ("random", random)):
            maps[name] = strongest_features(extractor.net.to(dev), x, index, features, per_feature)
            maps[name].saliency = maps[name].saliency.cpu()
            advance(1)
    png, meta = stem.with_suffix(".png"), stem.with_suffix(".json")
    save_image(inspect_figure(maps["trained"], maps["random"]), png)
    dataset_index = batch.indices.tolist()
    report = {
        **_header(
            run_dir, real, features=features, per_feature=per_feature, layer=index + 1, images=len(chosen), seed=seed
        ),
        "figure": png.name,
        "layout": "left: random discriminator, right: trained; one row per feature (strongest first), one column per image",
        **{
            name: {
                "description": (trained if name == "trained" else random).describe(),
                "layer": m.layer + 1,
                "channels": m.channels,
                "strength": m.strength,
                "dataset_indices": [[dataset_index[r] for r in rows] for rows in m.image_rows],
                "responses": m.responses,
            }
            for name, m in maps.items()
        },
    }
    atomic_write_json(meta, report)
    return report


# ---------------------------------------------------------------------------- neighbours


def neighbours_run(
    run_dir: Path,
    real: RealImages,
    stem: Path,
    *,
    samples: int = 8,
    neighbours: int = 5,
    heldout_fraction: float = 0.1,
    score_samples: int | None = None,
    seed: int = 0,
    engine: str = "auto",
    batch_size: int = 256,
    device: str = "auto",
    cache: bool = True,
) -> dict:
    """Nearest training images of samples (figure) and the memorisation score: STEM.png + STEM.json."""
    from dcgan_analysis.figures import neighbours_figure
    from dcgan_analysis.neighbours import memorisation, nearest
    from dcgan_cli.api import sample_batches

    if samples < 1 or neighbours < 1:
        raise DcganError("-n/--num-samples and --neighbours must each be at least 1")
    if not 0 < heldout_fraction < 0.9:
        raise DcganError(f"--heldout-fraction must be between 0 and 0.9, got {heldout_fraction}")
    trained = DiscriminatorFeatures.trained(run_dir)
    pixels = PixelFeatures()
    extracted = cached_features(
        FeatureCache.for_run(run_dir, cache),
        real,
        {TRAINED: trained, PIXELS: pixels},
        None,
        batch_size,
        device,
        "real images",
    )
    n = len(extracted.indices)
    order = np.random.default_rng(derive_seed(seed, "neighbours", "heldout") % 2**32).permutation(n)
    n_held = int(round(n * heldout_fraction))
    if n_held < 2 or n - n_held < neighbours:
        raise DcganError(
            f"{n} readable images are too few to hold out {heldout_fraction:.0%} and find {neighbours} neighbours"
        )
    held, reference = np.sort(order[:n_held]), np.sort(order[n_held:])
    n_score = score_samples if score_samples is not None else n_held
    if n_score < 2:
        raise DcganError(f"--score-samples must be at least 2, got {n_score}")
    n_draw = max(samples, n_score)
    trained.to(resolve_device(device))
    fake_pixels, fake_features = [], []
    with open_engine(engine, run_dir, device=device) as eng, progress_task(f"samples ({eng.NAME})", n_draw) as advance:
        engine_name = eng.NAME
        for _, _, images in sample_batches(eng, seed, n_draw, batch_size):
            fake_pixels.append(pixels(images))
            fake_features.append(trained(images))
            advance(len(images))
    fake_pixels, fake_features = torch.cat(fake_pixels), torch.cat(fake_features)
    real_pixels, real_features = extracted.features[PIXELS], extracted.features[TRAINED]
    ref_pixels, ref_features = real_pixels[reference], real_features[reference]

    scores = [
        memorisation("pixels", fake_pixels[:n_score], real_pixels[held], ref_pixels),
        memorisation(trained.describe(), fake_features[:n_score], real_features[held], ref_features),
    ]
    _, by_pixels = nearest(fake_pixels[:samples], ref_pixels, neighbours)
    _, by_features = nearest(fake_features[:samples], ref_features, neighbours)
    shape = (-1, real.options.channels, real.options.size, real.options.size)
    figure = neighbours_figure(
        fake_pixels[:samples].reshape(shape),
        ref_pixels[by_pixels.flatten()].reshape(samples, by_pixels.shape[1], *shape[1:]),
        ref_pixels[by_features.flatten()].reshape(samples, by_features.shape[1], *shape[1:]),
    )
    png, meta = stem.with_suffix(".png"), stem.with_suffix(".json")
    save_image(figure, png)
    dataset_index = extracted.indices[torch.from_numpy(reference)]
    report = {
        **_header(
            run_dir,
            real,
            samples=samples,
            neighbours=neighbours,
            heldout_fraction=heldout_fraction,
            score_samples=n_score,
            seed=seed,
            engine=engine_name,
        ),
        "figure": png.name,
        "layout": "per row: sample i of the seed; its nearest training images in pixel space; in trained-discriminator feature space",
        "reference_images": len(reference),
        "heldout_images": len(held),
        "nearest_by_pixels": dataset_index[by_pixels].tolist(),
        "nearest_by_features": dataset_index[by_features].tolist(),
        "memorisation": [{**s.summary(), "verdict": s.verdict()} for s in scores],
    }
    atomic_write_json(meta, report)
    return report


# ---------------------------------------------------------------------------- fid


def fid_run(
    run_dir: Path,
    real: RealImages,
    out: Path,
    *,
    extractor: str = "auto",
    inception_weights: Path | None = None,
    n: int = 10000,
    max_real: int | None = 10000,
    seed: int = 0,
    engine: str = "auto",
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    batch_size: int = 256,
    device: str = "auto",
    cache: bool = True,
) -> dict:
    """FID and KID between n samples and the real images, on the chosen extractor's features."""
    from dcgan_analysis.fid import (
        ExtractorContext,
        choose_extractor,
        compare,
        real_subset,
        sample_features,
    )

    if n < 2:
        raise DcganError(f"-n must be at least 2, got {n}")
    if kid_subsets < 1 or kid_subset_size < 2:
        raise DcganError("--kid-subsets must be at least 1 and --kid-subset-size at least 2")
    feature_cache = FeatureCache.for_run(run_dir, cache)
    context = ExtractorContext(run_dir, real, device, inception_weights, feature_cache.folder, seed)
    chosen = choose_extractor(extractor, context)
    indices = real_subset(real, max_real, seed)
    real_features = cached_features(
        feature_cache, real, {chosen.NAME: chosen}, indices, batch_size, device, "real images"
    )
    with open_engine(engine, run_dir, device=device) as eng:
        engine_name = eng.NAME
        fake = sample_features(eng, chosen, n, seed, batch_size, device)
    result = compare(
        chosen, fake.numpy(), real_features.features[chosen.NAME].numpy(), kid_subsets, kid_subset_size, seed
    )
    report = {
        **_header(
            run_dir,
            real,
            extractor=extractor,
            inception_weights=str(inception_weights) if inception_weights else None,
            n=n,
            max_real=max_real,
            seed=seed,
            engine=engine_name,
            kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size,
        ),
        **result.to_dict(),
        "features_from_cache": bool(real_features.cached),
    }
    atomic_write_json(out, report)
    return report
